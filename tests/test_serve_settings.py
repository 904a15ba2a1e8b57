"""serve/settings.py (and colorize.tune.service.TuneRequest) state each default once: `colorize serve`'s flags are generated
from the dataclass and serve/config.yaml agrees with it."""

import dataclasses

import pytest
import yaml
from conftest import ROOT

from colorize.cli import build_parser
from colorize.cli.serve import NOT_FLAGS, settings_values
from colorize.serve.settings import Settings


def test_every_setting_is_a_flag_with_its_comment_as_help():
    serve_parser = build_parser()._subparsers._group_actions[0].choices["serve"]
    actions = {a.dest: a for a in serve_parser._actions}
    helps = Settings.field_help()
    for field in dataclasses.fields(Settings):
        if field.name in NOT_FLAGS:
            continue
        action = actions[field.name]
        assert action.default is None  # the dataclass supplies the default
        assert action.help.startswith(helps[field.name]), field.name


def test_no_flag_given_is_the_dataclass_defaults():
    args = build_parser().parse_args(["serve", "some/model"])
    assert Settings.from_dict(settings_values(args)) == Settings("some/model")


def test_flags_in_other_units_convert_to_the_fields():
    args = build_parser().parse_args([
        "serve", "m", "--replicas", "1-3", "--batch-wait-ms", "50", "--max-upload-mb", "2",
        "--max-batch-size", "4", "--target-ongoing-requests", "6", "--port", "8123"])
    settings = Settings.from_dict(settings_values(args))
    assert (settings.min_replicas, settings.max_replicas) == (1, 3)
    assert settings.batch_wait_timeout_s == pytest.approx(0.05)
    assert settings.max_upload_bytes == 2 * 1024 * 1024
    assert (settings.max_batch_size, settings.autoscaling_target, settings.port) == (4, 6.0, 8123)
    assert Settings("m", max_batch_size=8).autoscaling_target == 8.0  # one batch by default


def test_config_yaml_agrees_with_the_dataclass():
    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    args = config["applications"][0]["args"]
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert set(args) <= set(defaults)
    deliberate = {"model_dir", "max_replicas"}  # the example's own choices, commented there
    assert {k: v for k, v in args.items() if k not in deliberate} == {
        k: defaults[k] for k in args if k not in deliberate}
    http = config["http_options"]
    assert (http["host"], http["port"]) == (Settings.host, Settings.port)


def test_tuning_options_default_to_the_tune_request():
    import inspect

    from colorize.tune.service import TuneRequest, run_tuning

    parameters = inspect.signature(run_tuning).parameters
    args = build_parser().parse_args(["tune", "--name", "x"])
    for name in ("storage", "folds", "num_samples", "max_epochs", "grace_period",
                 "reduction_factor", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
                 "scheduler"):
        assert getattr(args, name) is None, name  # run_tuning fills in TuneRequest's
        assert parameters[name].default is None, name  # not restated there either
        assert name in {f.name for f in dataclasses.fields(TuneRequest)}


@pytest.mark.parametrize(("values", "words"), [
    ({"precision": "float64"}, "precision must be one of auto, float32"),
    ({"max_batch_size": 0}, "max_batch_size must be at least 1"),
])
def test_bad_settings_are_one_clear_error(values, words):
    from colorize.errors import ColorizeError

    with pytest.raises(ColorizeError, match=words):
        Settings("m", **values)
