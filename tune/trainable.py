"""One Tune trial: a configuration scored by k-fold cross-validation, the k folds in lockstep.

Each epoch trains every fold's model one epoch (`colorize.training.EpochTrainer`, the same
model, loss, data pipeline and metrics as `colorize fit`), scores each on its held-out
fold, and reports one result with the mean and spread across folds, so ASHA prunes on
the cross-validated mean rather than on one lucky fold. The k models and the epoch are
checkpointed each epoch; a retried or resumed trial continues from its last checkpoint.

Tests may make one trial fail once (colorize/testing.py, `trial_fail_once`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colorize import testing

log = logging.getLogger(__name__)

# The metrics a search can rank its trials on (`--metric`), each the fold mean of a validation
# score, and the column of the trial's results that holds it. ASHA, Optuna and the
# leaderboard all rank on the one the search names. colour_score is `colorize.training.
# monitor_score` with monitor "colour": PSNR, less UNCOLOURFUL_PENALTY dB where the fold's
# colourfulness is below `colour_floor` x its truth's (the search's base colour_floor, so
# searching colour_floor cannot lower the bar).
# val_calibrated_psnr is PSNR after each fold's epoch is calibrated as `fit` would ship it
# (monitor "calibrated", the only rule under which the folds compute it).
METRICS = {"val_ssim": "ssim_mean", "val_psnr": "psnr_mean", "colour_score": "colour_score_mean",
           "val_calibrated_psnr": "calibrated_psnr_mean"}
DEFAULT_METRIC = "val_ssim"
MODES = ("max", "min")
METRIC = METRICS[DEFAULT_METRIC]  # the column of the default metric
# The metric each model-selection rule (TrainConfig.monitor) matches: a search ranks its
# trials as the configuration it searches around selects its epochs.
METRIC_OF_MONITOR = {"ssim": "val_ssim", "psnr": "val_psnr", "colour": "colour_score",
                     "calibrated": "val_calibrated_psnr"}


def column(metric: str) -> str:
    """The results column of `metric` (a name of METRICS, or already a column)."""
    return METRICS.get(metric, metric)


@dataclass(frozen=True)
class CVData:
    """What every trial shares, put once in the object store: tiles and the fold indices."""

    tiles: np.ndarray  # (N, S, S, 3) uint8 tiles of the train+validation photos
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]  # (train, held-out) tile indices per fold
    base: dict  # the fixed TrainConfig fields; the searched ones override them
    max_epochs: int


def train_cv(config: dict, data: CVData) -> None:
    """Tune function trainable: train the k folds epoch by epoch and report each epoch."""
    import keras
    from ray import tune

    from colorize.config import TrainConfig
    from colorize.distributed.ray_session import limit_tf_threads, quiet_worker_logs
    from colorize.training import EpochTrainer

    quiet_worker_logs()  # warnings and errors reach the driver; per-epoch INFO lines do not
    limit_tf_threads()
    keras.backend.clear_session()  # actors are reused across trials
    base = TrainConfig.from_dict(data.base)
    # A trial is --max-epochs epochs long: a schedule over the epochs (cosine without a clock:
    # a trial has none) ends with the trial, not with the base's own `epochs`. The base's
    # time budget (max_minutes) and patience are the final fit's, not a trial's.
    trial_config = TrainConfig.from_dict({**config, "epochs": data.max_epochs}, base)
    colour = TrainConfig.from_dict({"monitor": "colour", "colour_floor": base.colour_floor}, trial_config)
    trainers = [
        EpochTrainer(trial_config, data.tiles[train], data.tiles[held]) for train, held in data.folds
    ]
    histories: list[dict[str, list[float]]] = [{} for _ in trainers]
    start = _restore(tune.get_checkpoint(), trainers, histories)
    for _ in range(start, data.max_epochs):
        began = time.perf_counter()
        per_fold = [trainer.run_epoch() for trainer in trainers]
        for trainer, scores in zip(trainers, per_fold, strict=True):
            scores["colour_score"] = colour_score(colour, scores, trainer.validation.truth_colourfulness)
        train_s = time.perf_counter() - began  # the folds' training and scoring, nothing of Tune's
        for history, scores in zip(histories, per_fold, strict=True):
            for key, value in scores.items():
                history.setdefault(key, []).append(value)
        metrics = summarize(per_fold)
        metrics.update(epoch=trainers[0].epoch, resumed_from=start, train_s=train_s)
        with tempfile.TemporaryDirectory() as tmp:
            _save(Path(tmp), trainers, histories)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        testing.trial_fail_once()  # does nothing unless a test asks


def colour_score(colour_config, scores: dict[str, float], truth_colourfulness: float) -> float:
    """A fold's colour_score: `monitor_score` under the "colour" rule, from its val_ scores."""
    from colorize.training import monitor_score

    plain = {key.removeprefix("val_"): value for key, value in scores.items()}
    return float(monitor_score(colour_config, plain, truth_colourfulness))


def summarize(per_fold: list[dict[str, float]]) -> dict:
    """Mean and std of validation SSIM across folds, means of PSNR, loss, colourfulness and
    colour score, and the per-fold values themselves."""
    ssim = np.array([f["val_ssim"] for f in per_fold])
    summary = {
        "ssim_mean": float(ssim.mean()),
        "ssim_std": float(ssim.std()),
        "psnr_mean": float(np.mean([f["val_psnr"] for f in per_fold])),
        "loss_mean": float(np.mean([f["loss"] for f in per_fold])),
        "colourfulness_mean": float(np.mean([f["val_colourfulness"] for f in per_fold])),
        "fold_ssim": [float(f["val_ssim"]) for f in per_fold],
        "fold_psnr": [float(f["val_psnr"]) for f in per_fold],
        "fold_loss": [float(f["loss"]) for f in per_fold],
    }
    if all("val_calibrated_psnr" in f for f in per_fold):
        summary["calibrated_psnr_mean"] = float(np.mean([f["val_calibrated_psnr"] for f in per_fold]))
    if all("colour_score" in f for f in per_fold):
        summary["colour_score_mean"] = float(np.mean([f["colour_score"] for f in per_fold]))
        summary["fold_colour_score"] = [float(f["colour_score"]) for f in per_fold]
    return summary


def _save(directory: Path, trainers: list, histories: list[dict]) -> None:
    from colorize.checkpoint import save_checkpoint

    for i, (trainer, history) in enumerate(zip(trainers, histories, strict=True)):
        save_checkpoint(directory / f"fold_{i}", trainer.model, trainer.epoch, history)
    (directory / "trial.json").write_text(json.dumps({"folds": len(trainers)}))


def _restore(checkpoint, trainers: list, histories: list[dict]) -> int:
    """Load every fold from a trial checkpoint; the epoch to continue from (0 when none)."""
    if checkpoint is None:
        return 0
    from colorize.checkpoint import load_checkpoint

    with checkpoint.as_directory() as directory:
        epochs = []
        for i, trainer in enumerate(trainers):
            epoch, history = load_checkpoint(Path(directory) / f"fold_{i}", trainer.model)
            trainer.epoch = epoch
            histories[i].update(history)
            epochs.append(epoch)
    assert len(set(epochs)) == 1, f"folds checkpointed at different epochs: {epochs}"
    log.info("trial resumed from its checkpoint at epoch %d", epochs[0])
    return epochs[0]


