"""--logger (colorize/distributed/tracking.py): the checks before any work, and real runs logging through
Ray's own logger callbacks: a Tune search to TensorBoard, CSV, MLflow (a local file store) and
Weights & Biases (offline), and a Ray Train run whose rank 0 writes TensorBoard, CSV, MLflow
and W&B. Tiny photos, 1-2 epochs; MLflow and W&B tests skip where the package is missing
(they are the extras colorize[mlflow] and colorize[wandb])."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from colorize.cli import main
from colorize.config import TrainConfig
from colorize.distributed import tracking
from colorize.errors import ColorizeError
from tests.conftest import write_photos

# Before any test starts Ray, so the W&B logging actors and workers inherit it: offline runs,
# written locally, no account needed.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

TINY = TrainConfig(image_size=16, depth=2, base_filters=4, batch_size=2)
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason='needs pip install "colorize[mlflow]"')
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                 reason='needs pip install "colorize[wandb]"')


def installed(*names: str) -> list[str]:
    return [n for n in names if n not in tracking.EXTRAS
            or importlib.util.find_spec(tracking.EXTRAS[n][0]) is not None]


# --- fast: checks before any work -------------------------------------------------------------


def test_loggers_are_checked_and_deduplicated():
    assert tracking.check(["csv", "tensorboard", "csv"]) == ("csv", "tensorboard")
    assert tracking.check(None) == ()
    with pytest.raises(ColorizeError, match="unknown --logger 'neptune'") as caught:
        tracking.check(["neptune"])
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_tracker_package_is_one_line_naming_its_extra(name, monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *a: None if module == name else real(module, *a))
    for command in (["tune", "--data", "sample", "--name", "x", "--storage", str(tmp_path)],
                    ["train", "--data", "sample", "--out", str(tmp_path / "o")],
                    ["pipeline", "--out", str(tmp_path / "p")]):
        assert main([*command, "--logger", name]) == 1
        err = capsys.readouterr().err
        assert err == (f'colorize: error: --logger {name} needs the {name} package: '
                       f'pip install "colorize[{name}]"\n')
    assert not (tmp_path / "x").exists() and not (tmp_path / "o").exists()


def test_logger_choices_are_argparse_usage_errors(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--data", "sample", "--logger", "neptune"])
    assert stop.value.code == 2 and "invalid choice: 'neptune'" in capsys.readouterr().err


def test_tune_callbacks_are_rays_own(monkeypatch, tmp_path):
    from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback

    callbacks = tracking.tune_callbacks(["tensorboard", "csv"], "search")
    assert [type(c) for c in callbacks] == [TBXLoggerCallback, CSVLoggerCallback]
    if "mlflow" in installed("mlflow"):
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())
        (mlflow,) = tracking.tune_callbacks(["mlflow"], "search")
        assert isinstance(mlflow, MLflowLoggerCallback)
        assert mlflow.experiment_name == "search" and mlflow.tracking_uri.startswith("file://")
    if "wandb" in installed("wandb"):
        from ray.air.integrations.wandb import WandbLoggerCallback

        monkeypatch.delenv("WANDB_PROJECT", raising=False)
        (wandb,) = tracking.tune_callbacks(["wandb"], "search")
        assert isinstance(wandb, WandbLoggerCallback) and wandb.project == "colorize"


def test_train_settings_default_mlflow_store_is_absolute(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking, "check", lambda loggers: tuple(loggers))  # whatever is installed
    settings = tracking.train_settings(["mlflow", "wandb"], "final", tmp_path / "out")
    assert settings["loggers"] == ["tensorboard", "csv", "mlflow", "wandb"]
    assert settings["mlflow"] == {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                  "experiment_name": "final"}
    assert settings["wandb"]["project"] == "colorize" and settings["wandb"]["id"].startswith("final-")
    assert settings["tensorboard_dir"] == str(tmp_path / "out" / "tensorboard")


# --- slow: real runs ---------------------------------------------------------------------------


def mlflow_runs(store: Path, experiment: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r} in {store}"
    return client.search_runs([found.experiment_id])


@pytest.mark.slow
def test_search_logs_every_trial_to_the_trackers(ray_local, tmp_path, cache_dir, monkeypatch):
    from colorize.tune.service import run_tuning

    store = tmp_path / "mlruns"  # a local file store (MLflow 3 asks to allow it)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    photos = write_photos(tmp_path / "photos", 12, size=(32, 32))
    loggers = installed("tensorboard", "csv", "mlflow", "wandb")
    outcome = run_tuning(
        data=str(photos), name="tracked", storage=tmp_path / "tune", folds=2, num_samples=2,
        max_epochs=1, space={"batch_size": [2], "loss": ["mse", "ssim"]}, config=TINY,
        cache_dir=cache_dir, verbose=0, max_concurrent=2, loggers=loggers,
        metric="colour_score",
    )
    folder = Path(outcome["experiment_dir"])
    assert folder.name == "tracked" and len(outcome["trials"]) == 2
    saved = json.loads((folder / "tune_request.json").read_text())
    assert saved["loggers"] == loggers and saved["metric"] == "colour_score"
    trials = [p for p in folder.iterdir() if p.is_dir() and (p / "params.json").exists()]
    assert len(trials) == 2
    for trial in trials:  # Tune's own CSV and TensorBoard logs in each trial's folder
        rows = list(csv.DictReader(open(trial / "progress.csv")))
        assert len(rows) == 1 and "colour_score_mean" in rows[0]
        assert list(trial.glob("events.out.tfevents.*"))
    if "mlflow" in loggers:
        runs = mlflow_runs(store, "tracked")
        assert len(runs) == 2  # a run per trial, with its searched values and its scores
        for run in runs:
            assert run.data.params["loss"] in ("mse", "ssim")
            assert {"ssim_mean", "psnr_mean", "colour_score_mean"} <= set(run.data.metrics)
            assert run.info.status == "FINISHED"
    if "wandb" in loggers:
        offline = [p for trial in trials for p in (trial / "wandb").glob("offline-run-*")]
        assert len(offline) == 2, offline


@pytest.mark.slow
def test_train_rank_zero_logs_to_tensorboard_csv_and_trackers(ray_local, tiny_photos, tiny_config,
                                                              cache_dir, tmp_path, monkeypatch):
    import dataclasses

    from colorize.distributed.train_driver import run_training
    from colorize.presets import ConfigSource

    store = tmp_path / "mlruns"  # a local file store (MLflow 3 asks to allow it)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())  # both passed on to the workers
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "final-model"
    loggers = installed("mlflow", "wandb")
    config = dataclasses.replace(tiny_config, epochs=2, patience=10)
    metrics = run_training(ConfigSource(config, "defaults"), tiny_photos, out, workers=2,
                           cache_dir=cache_dir, loggers=loggers)
    assert metrics["distributed"]["storage"] == str(out / "ray" / "final-model")  # named after --out
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard logs"  # rank 0 only: one writer per split
    assert len({e.parent for e in events}) == len(events)
    rows = list(csv.DictReader(open(out / "epochs.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1] and "val_ssim" in rows[0]
    if "mlflow" in loggers:
        (run,) = mlflow_runs(store, "final-model")  # one run: rank 0's
        assert run.info.run_name == "final-model" and run.info.status == "FINISHED"
        assert {"loss", "val_ssim", "val_psnr"} <= set(run.data.metrics)
        assert run.data.params["loss"] == config.loss
    if "wandb" in loggers:
        assert len(list((out / "wandb").glob("offline-run-*"))) == 1


@pytest.mark.slow
def test_a_failing_workers_error_reaches_the_console(tiny_photos, cache_dir, tmp_path):
    """`colorize train` in its own process and its own local Ray: the worker's exception (and
    its traceback, from the worker) is in the command's stderr, which is a job's log."""
    marker = tmp_path / "failed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
           "COLORIZE_TEST_FAIL_ONCE_AT_EPOCH": "1", "COLORIZE_TEST_FAIL_MARKER": str(marker)}
    run = subprocess.run(
        [sys.executable, "-m", "colorize.cli", "train", "--data", str(tiny_photos), "--out",
         str(tmp_path / "out"), "--workers", "1", "--max-failures", "0", "--cache", str(cache_dir),
         "--image-size", "32", "--depth", "2", "--base-filters", "8", "--batch-size", "4",
         "--epochs", "2", "--config", "seed"],
        capture_output=True, text=True, env=env, timeout=420, cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr[-3000:]
    assert marker.read_text() == "1"
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("colorize: error: distributed training failed")
    # The worker's own output reached the driver: Ray prefixes it with the worker's actor
    worker_lines = [line for line in run.stderr.splitlines()
                    if "test hook: worker failing once at epoch 1" in line and "pid=" in line]
    assert worker_lines, run.stderr[-3000:]
