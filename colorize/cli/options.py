"""Options shared by the subcommands: --data, one flag per TrainConfig field, the
TrainConfig they add up to, and options spelled in full. Every subcommand module imports
these; nothing here imports a subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from colorize.errors import usage_errors

DATA_HELP = ("folder of colour photos, or 'sample'; repeat --data (or give a comma-separated "
             "list) to train on several folders together")


class _DataAction(argparse.Action):
    """--data, repeatable; each value may itself be a comma-separated list of folders.
    Given once or more, the value is a list (the default, when not given, is kept as is)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from colorize.data import data_sources

        current = getattr(namespace, self.dest, None)
        items = list(current) if isinstance(current, list) else []
        with usage_errors():  # an empty --data, say
            setattr(namespace, self.dest, items + data_sources(values))


def add_data_option(parser, default: str | None = "sample", required: bool = False,
                    help: str = DATA_HELP, flag: str = "--data") -> None:
    """The one --data option: a folder, 'sample', or several folders (see colorize.data);
    `flag` names another option that takes the same values (--test-data)."""
    parser.add_argument(flag, action=_DataAction, default=default, required=required,
                        metavar="DIR", help=help)


def add_config_options(parser: argparse.ArgumentParser, auto: bool = False) -> None:
    """--config (a preset's name or a JSON file) and one flag per TrainConfig field
    (--image-size, --loss, ...), typed and explained from the dataclass itself, overriding it.
    With `auto` (the commands that train one model), --config defaults to choosing the preset
    by the number of photos (colorize.presets)."""
    import dataclasses

    from colorize import presets
    from colorize.config import CHOICES, RENAMED, TrainConfig

    group = parser.add_argument_group("model and training (override --config)")
    names = ", ".join(presets.PRESETS)
    if auto:
        group.add_argument(
            "--config", default=presets.AUTO, metavar="PRESET|FILE",
            help=f"a preset ({names}) or a JSON file of configuration values (default "
                 f"{presets.AUTO}: {presets.RECIPE!r} for {presets.PHOTOS_AT_LEAST} photos or more, else "
                 "'seed', the seed's small model)")
    else:
        group.add_argument("--config", metavar="PRESET|FILE", help=f"a preset ({names}) or a "
                           "JSON file of configuration values (default: seed)")
    helps = TrainConfig.field_help()
    # Beside each default, the value of the recipe `auto` trains on real photos, where it differs.
    recipe = {k: v for k, v in presets.PRESETS[presets.RECIPE].items() if getattr(TrainConfig, k) != v}
    for field in dataclasses.fields(TrainConfig):
        kinds: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "bool": _yes_no}
        kind = kinds[str(field.type)]
        # Choices are listed, not enforced here: TrainConfig refuses a bad value in one line.
        choices = CHOICES.get(field.name) or (YES_NO if kind is _yes_no else None)
        older = [old for old, name in RENAMED.items() if name == field.name]  # still accepted
        group.add_argument(
            *["--" + name.replace("_", "-") for name in (field.name, *older)],
            dest=field.name, type=kind, default=None,
            metavar=choices_metavar(choices) if choices else None,
            help=f"{helps.get(field.name, '')} (default: {shown(field.default)}"
                 + (f"; {presets.RECIPE} preset: {shown(recipe[field.name])})" if field.name in recipe
                    else ")"),
        )


YES_NO = ("yes", "no")


def choices_metavar(choices) -> str:
    """The one way the CLI writes a set of choices: {a,b,c}, as argparse does for `choices`."""
    return "{" + ",".join(str(c) for c in choices) + "}"


def shown(value) -> str:
    """A default as the user types it: yes/no for booleans, not True/False."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def positive(kind=int, allow_zero: bool = False):
    """An argparse type: a number of `kind` above 0 (or at least 0): argparse refuses others."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            least = "0 or more" if allow_zero else "above 0"
            raise argparse.ArgumentTypeError(f"must be {least}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def _yes_no(value: str) -> bool:
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


def config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (None = not given)."""
    import dataclasses

    from colorize.config import TrainConfig

    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }


def config_from_args(args: argparse.Namespace, base=None):
    """The TrainConfig the options describe: the flags given, over `base` (an experiment's
    best configuration), else over --config (a preset or a file), else over the defaults."""
    from colorize import presets
    from colorize.config import TrainConfig

    if base is None and getattr(args, "config", None) not in (None, presets.AUTO):
        base = presets.load(args.config)  # a missing or broken file: a runtime error
    with usage_errors():  # a bad flag value (--zoom 3): a usage error
        config = TrainConfig.from_dict(config_overrides(args), base)
    for caution in config.cautions():
        print(f"colorize: note: {caution}", file=sys.stderr)
    return config


def config_source(args: argparse.Namespace, data, say=print):
    """The ConfigSource of a command that trains one model (fit, train): --config as given,
    or, left at auto, the preset for the number of photos in `data` (said in one line)."""
    from colorize import presets
    from colorize.presets import ConfigSource

    spec = args.config
    if spec == presets.AUTO:
        from colorize.data import photos_from

        count = len(photos_from(data))
        spec = presets.choose(count)
    config = config_from_args(args, base=presets.load(spec))
    if args.config == presets.AUTO:
        say(presets.why(spec, count, config.max_minutes))  # the budget the flags leave
    return ConfigSource(config, "preset" if spec in presets.PRESETS else "file", str(spec))


def add_metric_options(parser: argparse.ArgumentParser, resume: bool = False) -> None:
    """--metric and --mode: what a search ranks its trials on (ASHA, Optuna, the leaderboard)."""
    from colorize.tune.trainable import METRICS, MODES

    kept = "; --resume keeps the experiment's" if resume else ""
    parser.add_argument(
        "--metric", choices=tuple(METRICS),
        help="rank trials on this fold mean: val_ssim, val_psnr, colour_score (PSNR, less "
             "100 dB where the colourfulness is below --colour-floor x the photos'; the "
             "'colour' rule of --monitor) or val_calibrated_psnr (PSNR after each epoch's "
             "calibration; --monitor calibrated) (default: what --config selects epochs on: "
             f"val_psnr for the photos recipe, val_ssim for the seed's model{kept})")
    parser.add_argument("--mode", choices=MODES,
                        help="max: higher is better (every --metric above); min: lower "
                             f"(default: max{kept})")


def add_logger_option(parser: argparse.ArgumentParser, command: str) -> None:
    """--logger, repeatable: the trackers a run logs to (colorize.distributed.tracking)."""
    from colorize.distributed.tracking import ALWAYS, EXTRAS, LOGGERS

    where = {"tune": "each trial's folder", "train": "OUT/tensorboard and OUT/epochs.csv",
             "pipeline": "each trial's folder and OUT/train"}[command]
    extras = ", ".join(f'pip install "colorize[{extra}]"' for _, extra in EXTRAS.values())
    parser.add_argument(
        "--logger", action="append", choices=LOGGERS, default=[],
        help=f"also log to this tracker (repeatable): mlflow ($MLFLOW_TRACKING_URI, default "
             f"./mlflow.db) or wandb ($WANDB_PROJECT, default colorize; WANDB_MODE=offline works "
             f"without an account); they need {extras}. {' and '.join(ALWAYS)} logs are "
             f"always written, into {where}")


def tuning_config(args: argparse.Namespace, data, say=print):
    """(the TrainConfig a search goes around, the preset's name or file): --config as given,
    or, left at auto, the preset `fit` and `train` would choose for the number of photos in
    `data` (said in one line, with the metric the trials will be ranked on)."""
    from colorize import presets
    from colorize.tune.trainable import METRIC_OF_MONITOR

    spec = args.config
    if spec == presets.AUTO:
        from colorize.data import photos_from

        count = len(photos_from(data))
        spec = presets.choose(count)
    config = config_from_args(args, base=presets.load(spec))
    if args.config == presets.AUTO:
        metric = getattr(args, "metric", None) or METRIC_OF_MONITOR.get(config.monitor, "val_ssim")
        if spec != "seed":
            say(f"configuration: the {spec!r} recipe for {count:,} photos (at least "
                f"{presets.PHOTOS_AT_LEAST}), its trials ranked on {metric}; --config photos "
                "for the recipe without the ImageNet encoder, --config seed for the seed's small model")
        else:
            say(f"configuration: the seed's small model for {count:,} photo(s) (the {presets.RECIPE!r} "
                f"recipe needs at least {presets.PHOTOS_AT_LEAST}), its trials ranked on "
                f"{metric}; --config {presets.RECIPE} to search around the recipe anyway")
    return config, spec


def refuse_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Refuse abbreviated options, here and in every subcommand: argparse would take one for
    whichever option it begins (`tune --out 4` set --output-stride), not say it is unknown."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                refuse_abbreviations(subparser)
