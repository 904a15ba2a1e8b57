"""Running a fit (`colorize fit` as a function): prepare the data (prepared_data.py),
train (training.fit), then finish: calibrate the colour on validation, evaluate on test and
write everything.

finalize() is shared with the Ray Train scale-out: whatever trained the model, the
calibration and the outputs (artifact, plots, results figure, metrics.json) are made the
same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from colorize import data
from colorize import metrics as metrics_lib
from colorize.artifact import Artifact, save_artifact
from colorize.config import TrainConfig
from colorize.evaluation import evaluate_photos
from colorize.inference import predict_ab
from colorize.plots import plot_history, plot_results
from colorize.prepared_data import PreparedData, prepare_data
from colorize.training import ValidationSet, WholeValidation, fit, score_tiles, trained_minutes

log = logging.getLogger(__name__)

RESULT_ROWS = 6  # test photos shown in the results figure


def run_fit(
    config: TrainConfig, source: data.DataSource, out_dir: str | Path, cache_dir=None, verbose: int = 1,
    callbacks=(), test_source: data.DataSource | None = None,
    val_source: data.DataSource | None = None,
    init: str | Path | None = None,
) -> dict:
    """Train on the train split, stop early on validation (the split's, or `val_source`),
    evaluate on test (the split's, or `test_source`); write outputs. `callbacks` (Keras) see
    each epoch's logs with the validation scores in them; `init` (a model) is the start."""
    out_dir = Path(out_dir)
    started = time.time()
    prepared = prepare_data(source, config, cache_dir, test_source, val_source)
    log.info("data: %s", json.dumps(prepared.info()))
    model, history = fit(
        config,
        prepared.tiles("train"),
        prepared.tiles("val"),
        checkpoint_dir=out_dir / "checkpoint",
        log_dir=out_dir / "tensorboard",
        verbose=verbose,
        callbacks=callbacks,
        init=init,
    )
    return finalize(out_dir, model, config, history, prepared, time.time() - started)


def finalize(
    out_dir: Path,
    model: keras.Model,
    config: TrainConfig,
    history: dict,
    prepared: PreparedData,
    train_seconds: float,
    extra: dict | None = None,
) -> dict:
    """Calibrate the colour on validation, evaluate on the test split at full resolution,
    write artifact, plots and metrics.json."""
    # A resumed run's own clock misses the minutes before its checkpoint; the history's has them.
    train_seconds = max(train_seconds, 60.0 * trained_minutes(history))
    val_tiles = prepared.tiles("val")
    # The whole validation photos are read only where a colour target is measured on them.
    calibration = calibrate(model, config, val_tiles, prepared.photos("val") if config.colour_target else ())
    artifact = Artifact(model, config, {"calibration": calibration})
    val_scores = score_tiles(model, val_tiles, config, calibration)
    val_rgb = list(data.eval_arrays(val_tiles, config.image_size)[0])
    val_grey = metrics_lib.grey_score(val_rgb)
    test_photos = prepared.photos("test")
    test = evaluate_photos(artifact, test_photos)
    metrics = {
        "validation": val_scores,
        "validation_grey": val_grey,  # the grey prediction on the same centre crops
        "test": test,
        "epochs": len(history.get("loss", [])),
        "train_seconds": round(train_seconds, 1),
        "calibration": calibration,
        **(extra or {}),
    }
    save_artifact(out_dir / "model", model, config, metrics, prepared.info(), calibration)
    # The curves are validation centre crops: draw the grey prediction's level on those too.
    plot_history(history, out_dir / "plots", grey=val_grey)
    samples = [photo.load() for photo in test_photos[:RESULT_ROWS]]
    plot_results(artifact, samples, out_dir / "results.png")
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def calibrate(model, config: TrainConfig, val_tiles: np.ndarray, val_photos: Sequence[data.Photo] = ()) -> dict:
    """The colour calibration of a trained model on the validation tiles
    (`ValidationSet.calibrate`), a colour target measured on the whole `val_photos` where
    given (`WholeValidation`); {} when disabled."""
    if not config.calibrate or not len(val_tiles):
        return {}
    validation = ValidationSet(val_tiles, config)
    whole = WholeValidation(model, config, val_photos) if config.colour_target and val_photos else None
    result = validation.calibrate(predict_ab(model, validation.l_norm), whole)
    where = f"; colour target on {len(val_photos)} whole photos" if whole else ""
    log.info("colour calibration on %d validation crops%s: %s", len(val_tiles), where, result)
    return result
