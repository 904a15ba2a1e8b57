"""`colorize fit` as a function: load, split, train, then evaluate and write everything.

finalize() is shared with the Ray Train scale-out: whatever trained the model, the
outputs (artifact, plots, results figure, metrics.json) are written the same way.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from colorize import data
from colorize import metrics as metrics_lib
from colorize.artifact import Artifact, save_artifact
from colorize.config import TrainConfig
from colorize.evaluation import evaluate_photos
from colorize.plots import plot_history, plot_results
from colorize.training import fit, score_tiles

log = logging.getLogger(__name__)

RESULT_ROWS = 6  # test photos shown in the results figure


@dataclass
class PreparedData:
    """A photo set with its 70/15/15 split: the input of every training entry point."""

    source: str | list[str]  # one folder or 'sample', or several folders
    photoset: data.PhotoSet
    split: data.Split

    def tiles(self, part: str):
        return self.photoset.tiles_of(getattr(self.split, part))

    def photos(self, part: str) -> list[data.Photo]:
        by_name = {p.name: p for p in data.photos_from(self.source)}
        return [by_name[self.photoset.names[i]] for i in getattr(self.split, part)]

    def info(self) -> dict:
        return {
            "source": self.source,
            "fingerprint": self.photoset.fingerprint,
            "photos": {part: len(getattr(self.split, part)) for part in ("train", "val", "test")},
            "tiles": {part: len(self.tiles(part)) for part in ("train", "val", "test")},
            "skipped": len(self.photoset.skipped),
        }


def prepare_data(source: data.DataSource, config: TrainConfig, cache_dir=None) -> PreparedData:
    photoset = data.load_photoset(source, config.image_size, cache_dir)
    return PreparedData(data.normalize_source(source), photoset, data.split_photos(len(photoset.names), config.seed))


def run_fit(
    config: TrainConfig, source: data.DataSource, out_dir: str | Path, cache_dir=None, verbose: int = 1,
    callbacks=(),
) -> dict:
    """Train on the train split, stop early on validation, evaluate on test; write outputs.
    `callbacks` (Keras) see each epoch's logs with the validation scores in them."""
    out_dir = Path(out_dir)
    started = time.time()
    prepared = prepare_data(source, config, cache_dir)
    log.info("data: %s", json.dumps(prepared.info()))
    model, history = fit(
        config,
        prepared.tiles("train"),
        prepared.tiles("val"),
        checkpoint_dir=out_dir / "checkpoint",
        log_dir=out_dir / "tensorboard",
        verbose=verbose,
        callbacks=callbacks,
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
    """Evaluate on the test split at full resolution, write artifact, plots and metrics.json."""
    artifact = Artifact(model, config)
    val_tiles = prepared.tiles("val")
    val_scores = score_tiles(model, val_tiles, config.image_size)
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
        **(extra or {}),
    }
    save_artifact(out_dir / "model", model, config, metrics, prepared.info())
    # The curves are validation centre crops: draw the grey prediction's level on those too.
    plot_history(history, out_dir / "plots", grey=val_grey)
    samples = [photo.load() for photo in test_photos[:RESULT_ROWS]]
    plot_results(artifact, samples, out_dir / "results.png")
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
