"""tune/: search-space checks, clear errors before any trial, and real Ray Tune searches on
tiny photos: k-fold results, ASHA pruning, outputs agreeing with Tune, resume, retry."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from colorize.config import TrainConfig
from colorize.errors import ColorizeError
from colorize.testing import FAIL_ONCE_ENV
from colorize.tune import search_space
from tests.conftest import write_photos

# Set at import, i.e. before any test starts Ray, so the trial workers inherit it. The hook
# is inert until a test creates the file it names (see colorize/testing.py).
FAIL_MARKER = Path(tempfile.gettempdir()) / f"colorize-tune-fail-once-{os.getpid()}"
os.environ.setdefault(FAIL_ONCE_ENV, str(FAIL_MARKER))

TINY = TrainConfig(image_size=16, depth=2, base_filters=4, batch_size=2)
SMALL_BATCHES = {"batch_size": [2, 4]}  # a fold of the tiny set trains on ~11 tiles


@pytest.fixture(scope="module")
def photos32(tmp_path_factory, cache_dir) -> Path:
    """20 generated 32x32 colour photos (one tile each at image_size 16)."""
    return write_photos(tmp_path_factory.mktemp("photos32"), 20, size=(32, 32))


def tuning(photos, storage, name, **options):
    from colorize.tune.service import run_tuning

    settings = dict(
        data=photos, name=name, storage=storage, folds=2, num_samples=1, max_epochs=2,
        space=SMALL_BATCHES, config=TINY, verbose=0, max_concurrent=2,
    )
    settings.update(options)
    return run_tuning(**settings)


# --- search space ---------------------------------------------------------------------------


def test_space_file_merges_over_the_defaults(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\ndepth: {low: 2, high: 3}\n")
    space = search_space.load_space(path)
    assert space["batch_size"] == [8, 16, 32, 64] and space["loss"] == ["mse", "ssim", "mse+ssim", "rgb", "psnr"]
    search_space.validate_space(space, TrainConfig(image_size=32))
    domains = search_space.to_tune(space)
    assert set(domains) == {"batch_size", "loss", "learning_rate", "depth"}
    assert search_space.contains(space, {"batch_size": 8, "loss": "ssim", "learning_rate": 1e-3,
                                         "depth": 3})
    assert not search_space.contains(space, {"batch_size": 12, "loss": "ssim",
                                             "learning_rate": 1e-3, "depth": 3})


def test_space_can_search_the_colour_options(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("head: [regression, bins]\ntemperature: {low: 0.2, high: 0.6}\n"
                    "monitor: [ssim, colour]\nrebalance: [0.0, 0.5]\nglobal_context: [false, true]\n"
                    "loss: [mse]\n")
    space = search_space.load_space(path)
    search_space.validate_space(space, TrainConfig(image_size=32))
    assert {"head", "temperature", "monitor", "rebalance", "global_context"} <= set(search_space.to_tune(space))
    assert search_space.contains(space, {"batch_size": 8, "loss": "mse", "head": "bins", "temperature": 0.3,
                                         "monitor": "colour", "rebalance": 0.5, "global_context": True})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("head: [regression, mixture]", "head must be one of"),
        ("temperature: {low: 0.0, high: 0.5}", "temperature must be in"),
        ("image_size: [16, 32]", "unknown search parameter"),
        ("colour: [1]", "unknown search parameter"),
        ("loss: []", "empty list"),
        ("loss: [mse, l1]", "unknown loss"),
        ("learning_rate: 0.01", "list of choices"),
        ("learning_rate: {low: 0.1, high: 0.01}", "low < high"),
        ("depth: {low: 2, high: 6}", "multiple of"),
        ("batch_size: [8, : 2", "not valid"),
    ],
)
def test_bad_space_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ColorizeError, match=message):
        search_space.validate_space(search_space.load_space(path), TrainConfig(image_size=32))


@pytest.mark.parametrize(
    ("text", "clash"),
    [
        ("lr_schedule: [exponential, cosine]\nlr_decay: [0.9, 1.0]", "lr_schedule='cosine', lr_decay=0.9"),
        ("rebalance: [0.0, 0.5]", "loss='ssim', rebalance=0.5"),  # the default losses hold ssim
        ("depth: {low: 1, high: 3}\noutput_stride: [1, 4]", "depth=1, output_stride=4"),
    ],
)
def test_values_that_clash_are_refused_before_any_trial(tmp_path, text, clash):
    """Each value passes alone; together a trial would refuse them, so the space is refused,
    naming only the clashing values."""
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ColorizeError, match="search values " + re.escape(clash) + " cannot go together"):
        search_space.validate_space(search_space.load_space(path), TrainConfig(image_size=32))


def test_a_clash_that_another_searched_value_rules_out_passes(monkeypatch):
    space = search_space.load_space({"rebalance": [0.0, 0.5], "head": ["bins"]})  # bins weighs any loss
    search_space.validate_space(space, TrainConfig(image_size=32))
    # a space too large to enumerate is sampled, and a clash in most of it still found
    monkeypatch.setattr(search_space, "MAX_COMBINATIONS", 8)
    with pytest.raises(ColorizeError, match="lr_schedule='cosine'"):
        search_space.validate_space({"lr_schedule": ["cosine"], "lr_decay": [0.9, 0.95], "loss": ["mse", "ssim"],
                                     "batch_size": [8, 16, 32]}, TrainConfig(image_size=32))


def test_searched_values_that_work_against_each_other_are_noted_once_with_the_fewest_values():
    base = TrainConfig(image_size=32)
    space = {"rebalance": [0.0, 0.5], "monitor": ["psnr", "calibrated"], "batch_size": [8, 16]}
    search_space.validate_space(space, base)  # noted, not refused: a user may mean it
    said = search_space.cautions(space, base)
    assert len(said) == 1
    assert said[0].startswith("trials that draw rebalance=0.5, monitor='psnr': rebalance 0.5 ")
    assert search_space.cautions({"rebalance": [0.0, 0.5], "monitor": ["calibrated"]}, base) == []
    # the base's own caution is said by the command line already, not once more per trial
    rebalanced = TrainConfig(image_size=32, rebalance=0.5, monitor="psnr")
    assert rebalanced.cautions() and search_space.cautions({"batch_size": [8, 16]}, rebalanced) == []


def test_around_the_bins_head_the_default_space_searches_the_learning_rate_not_the_loss():
    bins = TrainConfig(head="bins")
    assert search_space.load_space(None, bins) == {"batch_size": search_space.DEFAULT_SPACE["batch_size"],
                                                   "learning_rate": search_space.BINS_LEARNING_RATE}
    search_space.validate_space(search_space.load_space(None, bins), bins)
    assert search_space.load_space(None, TrainConfig()) == search_space.DEFAULT_SPACE
    assert "loss" not in search_space.load_space({"temperature": [0.3, 0.5]}, bins)
    # a space that searches the head may train the regression head: its losses stay
    assert search_space.load_space({"head": ["regression", "bins"]}, bins)["loss"] == list(
        search_space.DEFAULT_SPACE["loss"])


# --- clear errors before any trial starts -------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"folds": 1}, "k >= 2"),
        ({"folds": 30}, "cannot make 30 folds"),
        ({"space": {"batch_size": [4, 64]}}, "batch size 64 is larger than the training part"),
        ({"space": {"loss": ["mse", "huber"]}}, "unknown loss"),
        ({"space": {"loss": []}}, "empty list"),
        ({"grace_period": 5, "max_epochs": 2}, "grace-period"),
        ({"name": "../x"}, "--name"),
        ({"data": "/nonexistent/photos"}, "data folder not found"),
    ],
)
def test_bad_inputs_fail_before_any_trial(photos32, tmp_path, options, message):
    with pytest.raises(ColorizeError, match=message):
        tuning(photos32, tmp_path, options.pop("name", "bad"), **options)
    assert not (tmp_path / "bad").exists()  # nothing started


def test_default_batch_sizes_shrink_to_what_a_fold_can_fill(photos32):
    from colorize.tune.service import TuneRequest, prepare_cv_data

    request = TuneRequest(str(photos32), "x", folds=3, space=search_space.load_space(None),
                          config=TINY.to_dict())
    data = prepare_cv_data(request, TINY)
    assert request.space["batch_size"] == [8]  # folds train on ~11 tiles
    assert len(data.folds) == 3 and all(len(train) >= 8 for train, _ in data.folds)
    held = sorted(int(i) for _, h in data.folds for i in h)
    assert held == list(range(len(data.tiles)))  # each tile held out exactly once


def test_several_data_folders_are_stored_absolute_and_folded_together(tmp_path, cache_dir):
    from colorize.tune.service import TuneRequest, _source, prepare_cv_data

    first = write_photos(tmp_path / "a" / "train", 6, size=(32, 32))
    second = write_photos(tmp_path / "a" / "val", 6, seed=1, size=(32, 32))
    data = _source(f"{first},{second}")
    assert data == [str(first.resolve()), str(second.resolve())]
    assert _source(["sample"]) == "sample"
    request = TuneRequest(data, "x", folds=2, space=SMALL_BATCHES, config=TINY.to_dict())
    assert json.loads(json.dumps(request.__dict__))["data"] == data  # --resume reads it back
    cv = prepare_cv_data(request, TINY)
    assert len(cv.tiles) == 10  # 12 photos, 2 held back as the test split


def test_folds_train_on_the_working_share_and_are_scored_on_the_working_scale(tmp_path, cache_dir):
    from dataclasses import replace

    from colorize.tune.service import TuneRequest, prepare_cv_data

    photos = write_photos(tmp_path / "big", 12, size=(64, 96))  # gives views at 2x
    base = replace(TINY, views=2, working_share=0.5)
    request = TuneRequest(str(photos), "x", folds=2, space=SMALL_BATCHES, config=base.to_dict())
    cv = prepare_cv_data(request, base)
    plain = prepare_cv_data(request, replace(base, working_share=0.0))
    for (train, held), (plain_train, plain_held) in zip(cv.folds, plain.folds, strict=True):
        assert np.array_equal(held, plain_held)  # scoring never changes
        assert set(train) == set(plain_train) and len(train) > len(plain_train)
        working = np.isin(train, np.concatenate([h for _, h in cv.folds]))  # the working-scale tiles
        assert 0.4 < working.mean() < 0.6  # about half the samples


def test_the_same_command_counts_as_the_same_search():
    from dataclasses import asdict

    from colorize.tune.service import TuneRequest, _same_options

    request = TuneRequest("/photos", "x", space=search_space.load_space(None), config=TINY.to_dict())
    saved = json.loads(json.dumps(asdict(request)))
    saved["space"]["batch_size"] = [8]  # the default choices shrunk to fit the folds
    saved["cache_dir"] = "/elsewhere"
    assert _same_options(saved, asdict(request))
    assert not _same_options(saved, {**asdict(request), "num_samples": 9})
    assert not _same_options(saved, {**asdict(request), "data": "/other"})


def test_a_request_saved_before_searches_named_their_metric_is_the_same_search():
    """tune_request.json files written before --metric: they ranked on val_ssim, max."""
    from dataclasses import asdict

    from colorize.tune.service import TuneRequest, _same_options

    request = TuneRequest("/photos", "x", space=SMALL_BATCHES, config=TINY.to_dict())
    old = {k: v for k, v in json.loads(json.dumps(asdict(request))).items()
           if k not in ("metric", "mode", "loggers")}
    assert _same_options(old, asdict(request))
    assert _same_options(old, {**asdict(request), "loggers": ["mlflow"]})  # logging: not the search
    assert not _same_options(old, {**asdict(request), "metric": "val_psnr"})
    assert TuneRequest(**old).metric == "val_ssim"


def test_resume_keeps_the_metric_and_loggers_it_started_with():
    from colorize.tune.service import TuneRequest, _keep_ranking

    request = TuneRequest("/photos", "x", metric="val_psnr", loggers=["csv"])
    _keep_ranking(request, None, None, [])  # nothing given: kept
    _keep_ranking(request, "val_psnr", "max", ["csv"])  # the same: fine
    with pytest.raises(ColorizeError, match="ranks its trials with --metric val_psnr") as caught:
        _keep_ranking(request, "val_ssim", None, [])
    assert caught.value.exit_code == 2
    with pytest.raises(ColorizeError, match="--mode max"):
        _keep_ranking(request, None, "min", [])
    with pytest.raises(ColorizeError, match="logs to csv; Tune restores its loggers"):
        _keep_ranking(request, None, None, ["mlflow"])


@pytest.mark.parametrize(("metric", "mode", "order"), [
    ("val_ssim", "max", ["a", "b", "c"]),
    ("val_psnr", "max", ["b", "c", "a"]),
    ("val_psnr", "min", ["a", "c", "b"]),
    ("colour_score", "max", ["c", "b", "a"]),
])
def test_trials_are_ranked_on_the_search_metric(tmp_path, metric, mode, order):
    """The leaderboard, trials.csv and best_config.json rank as ASHA and Optuna do."""
    from types import SimpleNamespace

    from colorize.tune import results

    figures = {"a": (0.80, 20.0, -80.0), "b": (0.70, 23.0, 22.0), "c": (0.60, 22.0, 22.5)}
    trials = [SimpleNamespace(trial_id=t, status="TERMINATED", config={"batch_size": 2},
                              last_result={"training_iteration": 2, "ssim_mean": ssim,
                                           "ssim_std": 0.01, "psnr_mean": psnr,
                                           "colour_score_mean": colour})
              for t, (ssim, psnr, colour) in figures.items()]
    records = results.collect(trials, {}, ["batch_size"], 2, "asha", metric, mode)
    assert [r.trial_id for r in records] == order
    best = results.write_best_config(records[0], TINY.to_dict(), "/photos", tmp_path / "best.json")
    assert best["metric"] == metric and best["mode"] == mode
    column = {"val_ssim": 0, "val_psnr": 1, "colour_score": 2}[metric]
    assert best["score"] == figures[order[0]][column]
    assert results.plot_name(metric) == {"val_ssim": "ssim.png", "val_psnr": "psnr.png",
                                         "colour_score": "colour_score.png"}[metric]
    results.write_trials_csv(records, ["batch_size"], tmp_path / "trials.csv")
    assert [row["trial_id"] for row in read_csv(tmp_path / "trials.csv")] == order
    assert "colour score" in results.summary_table(records, ["batch_size"])


def test_colour_score_is_the_colour_monitor_of_fit():
    """PSNR where the fold's colourfulness reaches colour_floor x the truth's, else 100 dB less:
    colorize.training.monitor_score's "colour" rule, the same number `fit` selects epochs on."""
    from colorize.training import UNCOLOURFUL_PENALTY
    from colorize.tune.trainable import colour_score, summarize

    rule = TrainConfig(monitor="colour", colour_floor=0.5)
    colourful = {"val_ssim": 0.9, "val_psnr": 22.0, "val_colourfulness": 12.0, "loss": 0.1}
    grey = {"val_ssim": 0.95, "val_psnr": 23.0, "val_colourfulness": 2.0, "loss": 0.1}
    assert colour_score(rule, colourful, truth_colourfulness=20.0) == 22.0
    assert colour_score(rule, grey, truth_colourfulness=20.0) == 23.0 - UNCOLOURFUL_PENALTY
    folds = [{**colourful, "colour_score": 22.0}, {**grey, "colour_score": 23.0 - UNCOLOURFUL_PENALTY}]
    summary = summarize(folds)
    assert summary["colour_score_mean"] == pytest.approx((22.0 + 23.0 - UNCOLOURFUL_PENALTY) / 2)
    assert summary["fold_colour_score"] == [22.0, 23.0 - UNCOLOURFUL_PENALTY]


def test_the_calibrated_metric_is_the_calibrated_monitor_of_fit():
    """val_calibrated_psnr: the search ranks as `fit --monitor calibrated` selects its epochs,
    the folds' mean of what each fold's epoch scores after its calibration; a base that does
    not calibrate every epoch (or searches the rule) is refused before any trial starts."""
    from colorize.tune.service import TuneRequest
    from colorize.tune.trainable import METRIC_OF_MONITOR, summarize

    assert METRIC_OF_MONITOR["calibrated"] == "val_calibrated_psnr"
    fold = {"val_ssim": 0.9, "val_psnr": 22.0, "val_colourfulness": 12.0, "loss": 0.1}
    summary = summarize([{**fold, "val_calibrated_psnr": 22.5}, {**fold, "val_calibrated_psnr": 23.5}])
    assert summary["calibrated_psnr_mean"] == pytest.approx(23.0)
    calibrated = TrainConfig(monitor="calibrated").to_dict()
    TuneRequest("/photos", "x", space=SMALL_BATCHES, config=calibrated, metric="val_calibrated_psnr").check()
    for config, space in ((TINY.to_dict(), SMALL_BATCHES), (calibrated, {**SMALL_BATCHES, "monitor": ["psnr"]})):
        request = TuneRequest("/photos", "x", space=space, config=config, metric="val_calibrated_psnr")
        with pytest.raises(ColorizeError, match="needs --monitor calibrated"):
            request.check()


def test_a_trial_runs_its_schedule_over_max_epochs_not_the_base_epochs(monkeypatch):
    """Around the photos recipe (cosine over the budget's minutes, which a trial has no clock
    for), a trial's learning rate falls to 0 over --max-epochs, not over the recipe's 100."""
    from colorize import presets
    from colorize.training import learning_rate_at
    from colorize.tune import trainable

    seen = []

    class Stop(Exception):
        pass

    class FakeTrainer:
        def __init__(self, config, train, held):
            seen.append(config)
            raise Stop

    import colorize.training

    monkeypatch.setattr(colorize.training, "EpochTrainer", FakeTrainer)
    from colorize.distributed import ray_session

    monkeypatch.setattr(ray_session, "limit_tf_threads", lambda cpus=None: None)  # no Ray here
    recipe = presets.load("photos")
    data = trainable.CVData(np.zeros((4, 16, 16, 3), np.uint8), ((np.arange(2), np.arange(2, 4)),),
                            recipe.to_dict(), max_epochs=4)
    with pytest.raises(Stop):
        trainable.train_cv({"batch_size": 8}, data)
    (config,) = seen
    assert config.epochs == 4 and config.batch_size == 8 and config.loss == "rgb"
    rates = [learning_rate_at(config, epoch) for epoch in range(5)]  # no clock: by the epoch
    assert rates[0] == config.learning_rate and rates[4] == pytest.approx(0.0)


def test_tune_searches_around_the_recipe_for_200_photos(tmp_path, capsys):
    """--config auto: the pretrained recipe (ranked on val_psnr) for 200 photos, as fit and train
    choose it; the seed's small model (ranked on val_ssim) for a handful."""
    from colorize import presets
    from colorize.cli import build_parser
    from colorize.cli.options import tuning_config

    many = write_photos(tmp_path / "many", presets.PHOTOS_AT_LEAST, size=(24, 24))
    parser = build_parser()
    args = parser.parse_args(["tune", "--data", str(many), "--name", "x"])
    config, preset = tuning_config(args, args.data)
    said = capsys.readouterr().out
    assert preset == "pretrained" and config == presets.load("pretrained")
    assert "the 'pretrained' recipe for 200 photos" in said and "ranked on val_psnr" in said
    args = parser.parse_args(["tune", "--data", "sample", "--name", "x", "--metric", "colour_score",
                              "--batch-size", "4"])
    config, preset = tuning_config(args, args.data)
    assert preset == "seed" and config == TrainConfig(batch_size=4)
    assert "ranked on colour_score" in capsys.readouterr().out
    args = parser.parse_args(["pipeline", "--data", "sample", "--config", "photos"])
    assert tuning_config(args, args.data)[1] == "photos" and capsys.readouterr().out == ""


def test_too_few_colour_photos_is_a_clear_error(tmp_path):
    import cv2
    import numpy as np

    folder = write_photos(tmp_path / "few", 2, size=(32, 32))
    cv2.imwrite(str(folder / "grey.png"), np.full((32, 32), 128, np.uint8))
    with pytest.raises(ColorizeError, match="usable colour photo"):
        tuning(folder, tmp_path / "runs", "few")


def test_cli_prints_one_line_errors(photos32, tmp_path, capsys):
    from colorize.cli import main

    code = main(["tune", "--data", str(photos32), "--name", "x", "--storage", str(tmp_path),
                 "--folds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("colorize: error:") and err.count("\n") == 1
    assert main(["tune", "--resume", "nothing-here", "--storage", str(tmp_path)]) == 1
    assert "no experiment 'nothing-here' to resume" in capsys.readouterr().err


# --- the live trial table -----------------------------------------------------------------


def fake_trial(trial_id, status, epoch=0, ssim=None, **config):
    from types import SimpleNamespace

    last = {"training_iteration": epoch, **({"ssim_mean": ssim} if ssim is not None else {})}
    return SimpleNamespace(trial_id=trial_id, status=status, config=config,
                           last_result=last if epoch else {})


def test_trial_table_shows_parameters_epoch_score_and_status(capsys):
    from colorize.tune.progress import TrialTable

    table = TrialTable(["batch_size", "loss"], max_epochs=4, scheduler="asha", interval_s=3600)
    trials = [fake_trial("a1", "RUNNING", 2, 0.81234, batch_size=8, loss="mse"),
              fake_trial("b2", "PENDING", batch_size=16, loss="ssim")]
    table.on_trial_result(0, trials, trials[0], {})  # the first result is printed at once
    table.on_trial_result(0, trials, trials[0], {})  # the next ones wait for the interval
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["trial", "batch_size", "loss", "epoch", "ssim_mean", "status"]
    assert out[2].split() == ["a1", "8", "mse", "2/4", "0.8123", "running"]
    assert out[3].split() == ["b2", "16", "ssim", "0/4", "-", "pending"] and len(out) == 4
    # ASHA stops a1 (Tune still says RUNNING when it calls back), b2 finishes: shown at once
    table.on_trial_complete(0, trials, trials[0])
    trials[1] = fake_trial("b2", "TERMINATED", 4, 0.8512, batch_size=16, loss="ssim")
    table.on_trial_complete(0, trials, trials[1])
    last = capsys.readouterr().out.splitlines()[-2:]
    assert last[0].split()[-5:] == ["2/4", "0.8123", "stopped", "by", "ASHA"]
    assert last[1].split()[-2:] == ["0.8512", "completed"]


def test_trial_table_shows_the_ranked_metric(capsys):
    from colorize.tune.progress import TrialTable

    table = TrialTable(["loss"], max_epochs=2, scheduler="asha", metric="val_psnr")
    trial = fake_trial("a1", "RUNNING", 1, loss="mse")
    trial.last_result["psnr_mean"] = 21.5
    table.on_trial_result(0, [trial], trial, {})
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["trial", "loss", "epoch", "psnr_mean", "status"]
    assert out[2].split() == ["a1", "mse", "1/2", "21.5000", "running"]


# --- real searches ------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def result_lines(result) -> list[dict]:
    return [json.loads(line) for line in (Path(result.path) / "result.json").read_text().splitlines()]


@pytest.mark.slow
def test_search_with_asha_over_kfold_trials(ray_local, photos32, tmp_path):
    space = {"batch_size": [2, 4], "loss": ["mse", "ssim", "mse+ssim"]}
    outcome = tuning(
        photos32, tmp_path, "search", folds=3, num_samples=4, max_epochs=3, grace_period=1,
        reduction_factor=2, space=space,
    )
    grid, folder = outcome["results"], Path(outcome["experiment_dir"])
    assert folder == tmp_path / "search" and not outcome["interrupted"]
    assert len(grid) == 4 and grid.num_errors == 0

    for result in grid:  # every result carries the k per-fold values and their summary
        for line in result_lines(result):
            assert len(line["fold_ssim"]) == 3 and len(line["fold_psnr"]) == 3
            assert line["ssim_mean"] == pytest.approx(sum(line["fold_ssim"]) / 3)
    epochs = [r.metrics["training_iteration"] for r in grid]
    assert max(epochs) == 3 and min(epochs) < 3, f"ASHA stopped no trial: {epochs}"

    best = json.loads((folder / "best_config.json").read_text())
    tune_best = grid.get_best_result(metric="ssim_mean", mode="max")
    assert best["trial_id"] == tune_best.metrics["trial_id"]
    assert best["ssim_mean"] == pytest.approx(tune_best.metrics["ssim_mean"])
    assert best["ssim_std"] == pytest.approx(tune_best.metrics["ssim_std"])
    assert best["epochs"] == tune_best.metrics["training_iteration"]
    assert search_space.contains(space, {k: best["config"][k] for k in space})
    assert TrainConfig.from_file(folder / "best_config.json").image_size == 16

    rows = read_csv(folder / "trials.csv")
    by_id = {r.metrics["trial_id"]: r.metrics for r in grid}
    assert [row["trial_id"] for row in rows][0] == best["trial_id"] and len(rows) == 4
    assert [float(row["ssim_mean"]) for row in rows] == sorted(
        (float(row["ssim_mean"]) for row in rows), reverse=True
    )
    for row in rows:
        metrics = by_id[row["trial_id"]]
        assert float(row["ssim_mean"]) == pytest.approx(metrics["ssim_mean"], abs=1e-6)
        assert int(row["epochs"]) == metrics["training_iteration"]
        assert int(row["batch_size"]) == metrics["config"]["batch_size"]
        assert row["status"] == ("completed" if int(row["epochs"]) == 3 else "stopped by ASHA")
    assert (folder / "ssim.png").stat().st_size > 0 and (folder / "optuna.db").exists()

    import optuna

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(study.trials) == 4


@pytest.mark.slow
def test_interrupted_search_resumes_without_rerunning_finished_trials(ray_local, photos32, tmp_path):
    folder = tmp_path / "resume"

    def interrupt_during_second_trial():  # like Ctrl-C once the first trial is done
        # Trials write their checkpoints straight to storage (result.json only reaches it when
        # Tune next syncs). One trial runs at a time, so the second trial's first checkpoint
        # means the first trial has completed and the second has 3 epochs still to run.
        deadline = time.time() + 240
        while time.time() < deadline:
            if len({p.parent.name for p in folder.glob("*/checkpoint_*")}) >= 2:
                os.kill(os.getpid(), signal.SIGUSR1)  # Tune treats it as SIGINT
                return
            time.sleep(0.1)

    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    watcher = threading.Thread(target=interrupt_during_second_trial, daemon=True)
    watcher.start()
    try:
        first = tuning(photos32, tmp_path, "resume", num_samples=2, max_concurrent=1,
                       scheduler="fifo", max_epochs=4, metric="val_psnr")
    finally:
        watcher.join()
        signal.signal(signal.SIGUSR1, previous)
    assert first["interrupted"]
    finished = {r.trial_id for r in first["trials"] if r.status == "completed"}
    assert len(finished) == 1
    before = {p.parent.name: p.read_text() for p in folder.glob("*/result.json")}

    second = tuning(None, tmp_path, "resume", resume=True)
    assert not second["interrupted"] and len(second["trials"]) == 2
    assert second["metric"] == "val_psnr"  # the resumed search ranks as it started
    best = json.loads((folder / "best_config.json").read_text())
    assert best["metric"] == "val_psnr" and best["trial_id"] == second["trials"][0].trial_id
    assert best["score"] == max(r.metrics["psnr_mean"] for r in second["trials"])
    assert all(r.status == "completed" and r.epochs == 4 for r in second["trials"])
    for trial_dir, text in before.items():  # finished trials were not trained again
        if any(trial_id in trial_dir for trial_id in finished):
            assert (folder / trial_dir / "result.json").read_text() == text
    rows = read_csv(folder / "trials.csv")
    assert len(rows) == 2 and {row["status"] for row in rows} == {"completed"}


@pytest.mark.slow
def test_failed_trial_is_retried_from_its_checkpoint(ray_local, photos32, tmp_path):
    FAIL_MARKER.write_text("fail once")  # the trial fails right after its first checkpoint
    try:
        outcome = tuning(photos32, tmp_path, "retry", num_samples=1, max_epochs=2)
    finally:
        FAIL_MARKER.unlink(missing_ok=True)
    (result,) = outcome["results"]
    assert result.error is None and result.metrics["training_iteration"] == 2
    assert result.metrics["resumed_from"] == 1  # continued from epoch 1, not from scratch
    assert outcome["trials"][0].status == "completed"
