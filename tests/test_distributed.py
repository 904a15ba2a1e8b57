"""colorize.distributed and `colorize train`: real local Ray (2 CPUs), 2 CPU workers, tiny data.

The experiment folders given to --from are written by tuning's own writers
(colorize.tune.results: best_config.json + trials.csv) from made-up trial records, not by a Tune
run, to keep these tests to a few minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo

from colorize.cli import main
from colorize.config import TrainConfig
from colorize.distributed.train_driver import (
    run_training,
    scaled_learning_rate,
    shard_indices,
    worker_config,
)
from colorize.errors import ColorizeError
from colorize.presets import ConfigSource, load_experiment
from colorize.testing import FAIL_AT_ENV, FAIL_MARKER_ENV


def write_experiment(folder: Path, config: TrainConfig, data: Path) -> Path:
    """An experiment folder written by tuning's own writers (best_config.json, trials.csv)."""
    from colorize.tune.results import TrialRecord, write_best_config, write_trials_csv

    folder.mkdir(parents=True)
    records = [
        TrialRecord("trial_best", {"learning_rate": config.learning_rate, "loss": config.loss},
                    "completed", 2, {"ssim_mean": 0.71, "ssim_std": 0.02, "psnr_mean": 21.5}),
        TrialRecord("trial_second", {"learning_rate": 0.01, "loss": "ssim"},
                    "stopped by ASHA", 1, {"ssim_mean": 0.65, "ssim_std": 0.03, "psnr_mean": 20.1}),
    ]
    write_trials_csv(records, ["learning_rate", "loss"], folder / "trials.csv")
    write_best_config(records[0], config.to_dict(), str(data), folder / "best_config.json")
    return folder


# --- fast: the rules -------------------------------------------------------------------------


def test_learning_rate_rules():
    assert scaled_learning_rate(1e-3, 4, "sqrt") == pytest.approx(2e-3)
    assert scaled_learning_rate(1e-3, 4, "linear") == pytest.approx(4e-3)
    assert scaled_learning_rate(1e-3, 4, "none") == pytest.approx(1e-3)
    with pytest.raises(ColorizeError, match="learning-rate rule"):
        scaled_learning_rate(1e-3, 2, "cubic")


def test_shards_cover_the_training_set_once():
    shards = shard_indices(15, 2, seed=0)
    assert sorted(np.concatenate(shards).tolist()) == list(range(15))
    assert [len(s) for s in shards] == [8, 7]


def test_every_worker_runs_the_same_number_of_steps(tiny_config):
    config = worker_config(tiny_config, train_count=14, workers=2, lr_scaling="sqrt")
    assert config.steps_per_epoch == 2  # ceil(14 / (4 x 2)): one pass over the whole set
    assert config.learning_rate == pytest.approx(tiny_config.learning_rate * 2**0.5)
    assert config.batch_size == tiny_config.batch_size  # per worker


def test_experiment_reader(tmp_path, tiny_config, tiny_photos):
    source = load_experiment(write_experiment(tmp_path / "exp", tiny_config, tiny_photos))
    assert source.config == tiny_config and source.kind == "tuning"
    assert source.best["trial_id"] == "trial_best" and "config" not in source.best
    assert [row["trial_id"] for row in source.leaderboard] == ["trial_best", "trial_second"]


def test_bad_experiment_folders(tmp_path, capsys):
    assert main(["train", "--from", str(tmp_path / "nope"), "--workers", "1"]) == 1
    assert "experiment folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--from", str(tmp_path / "empty"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "no best_config.json" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--from", str(tmp_path / "empty"), "--config", "x.json"]) == 2
    assert "not both" in capsys.readouterr().err


# --- slow: real Ray Train ----------------------------------------------------------------------


@pytest.mark.slow
def test_more_workers_than_cpus_is_refused_before_starting(ray_local, tiny_photos, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_photos), "--workers", "3", "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert "3 worker(s) need 3 CPU(s) but the Ray cluster has 2" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_train_from_experiment_on_two_workers(ray_local, tiny_photos, tiny_config, cache_dir, tmp_path, capsys, caplog):
    from colorize.artifact import load_artifact
    from colorize.inference import colorize_image

    caplog.set_level("INFO", logger="colorize.distributed")
    experiment = write_experiment(tmp_path / "exp", tiny_config, tiny_photos)
    out = tmp_path / "final"
    assert main(["train", "--from", str(experiment), "--workers", "2", "--out", str(out),
                 "--cache", str(cache_dir)]) == 0  # --data comes from best_config.json
    assert "report.html" in capsys.readouterr().out
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]  # on the driver
    assert all("val SSIM 0." in line and " img/s, " in line for line in epochs)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert metrics["distributed"]["workers"] == 2 and metrics["distributed"]["global_batch"] == 8
    assert metrics["test"]["images"] == 3 and 0 < metrics["test"]["model"]["ssim"] <= 1
    assert (out / "ray" / "final" / "epoch_0002" / "best.weights.h5").exists()  # named after --out
    for name in ("results.png", "plots/loss.png", "plots/ssim.png", "plots/psnr.png"):
        assert (out / name).stat().st_size > 0

    artifact = load_artifact(out / "model")
    assert artifact.config == tiny_config  # the experiment's best configuration
    photo = make_photo(np.random.default_rng(1), 40, 56)
    result = colorize_image(artifact, photo)
    assert result.shape == photo.shape and result.dtype == np.uint8
    ab = np.asarray(artifact.model(np.zeros((1, 32, 32, 1), np.float32)))
    assert ab.shape == (1, 32, 32, 2) and np.all(np.abs(ab) <= 1)

    report = (out / "report.html").read_text()
    assert "trial_best" in report and "trial_second" in report  # the leaderboard
    assert report.count("data:image/png;base64,") == 4  # three curves and the results figure


@pytest.mark.slow
def test_failed_worker_restarts_from_checkpoint_and_rerun_resumes(
    ray_local, tiny_photos, tiny_config, cache_dir, tmp_path, monkeypatch
):
    out, marker = tmp_path / "run", tmp_path / "failed-once"
    monkeypatch.setenv(FAIL_AT_ENV, "2")  # test hook: the last worker raises after epoch 2
    monkeypatch.setenv(FAIL_MARKER_ENV, str(marker))
    config = dataclasses.replace(tiny_config, epochs=3, patience=10)
    metrics = run_training(
        ConfigSource(config, "defaults"), tiny_photos, out, workers=2, max_failures=1,
        cache_dir=cache_dir,
    )
    assert marker.read_text() == "2"  # the worker did fail
    assert metrics["epochs"] == 3  # ... and the run still finished
    # Continued, not started over. Epoch 2's checkpoint counts once every worker has reported
    # it, and the failing worker can die before the other's report lands (seen under load),
    # so the run resumes after epoch 2 or, at worst, epoch 1.
    assert metrics["distributed"]["resumed_after_epoch"] in (1, 2)
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 3

    monkeypatch.delenv(FAIL_AT_ENV)
    more = dataclasses.replace(config, epochs=4)  # same storage and name: resumes
    metrics = run_training(ConfigSource(more, "defaults"), tiny_photos, out, workers=2, cache_dir=cache_dir)
    assert metrics["epochs"] == 4 and metrics["distributed"]["resumed_after_epoch"] == 3
