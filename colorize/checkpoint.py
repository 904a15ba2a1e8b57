"""The training checkpoint's format, the one place it is written down: a folder holding
the latest weights (with the optimizer's moments), `state.json` (epochs done and the
history so far) and the best epoch's weights. `fit` writes one each epoch and resumes from
it; a Ray Train run ships it as its Ray checkpoint, a Tune trial one per fold.

Every file is written under a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras

WEIGHTS = "weights.weights.h5"  # the latest epoch's weights and optimizer state
STATE = "state.json"  # {"epoch": epochs done, "history": {key: [one value per epoch]}}
BEST_WEIGHTS = "best.weights.h5"  # the best epoch's weights so far


def save_checkpoint(directory: Path, model: keras.Model, epoch: int, history: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_weights(directory / "weights.tmp.weights.h5")
    os.replace(directory / "weights.tmp.weights.h5", directory / WEIGHTS)
    state = json.dumps({"epoch": epoch, "history": history})
    (directory / "state.tmp.json").write_text(state)
    os.replace(directory / "state.tmp.json", directory / STATE)


def save_best(directory: Path, model: keras.Model) -> None:
    """`model`'s weights as the best epoch's, written whole or not at all."""
    directory = Path(directory)
    model.save_weights(directory / "best.tmp.weights.h5")
    os.replace(directory / "best.tmp.weights.h5", directory / BEST_WEIGHTS)


def saved_epoch(directory: str | Path) -> int:
    """The epochs done by the checkpoint in `directory` (0 when there is none)."""
    state = Path(directory) / STATE
    return int(json.loads(state.read_text())["epoch"]) if state.exists() else 0


def load_checkpoint(directory: str | Path, model: keras.Model) -> tuple[int, dict]:
    """Restore weights (and the optimizer's moments) into `model`; (epochs done, history).
    (0, {}) when there is none. Call it in the strategy's scope when there is one."""
    directory = Path(directory)
    if not (directory / STATE).exists():
        return 0, {}
    state = json.loads((directory / STATE).read_text())
    optimizer = getattr(model, "optimizer", None)  # None for an inference-only model
    if optimizer is not None and not optimizer.built:
        # Adam's slots must exist before loading, or Keras skips them and resets the moments.
        optimizer.build(model.trainable_variables)
    model.load_weights(directory / WEIGHTS)
    return int(state["epoch"]), state["history"]


def load_best(directory: str | Path | None, model: keras.Model) -> keras.Model:
    """`model` with the checkpoint's best epoch loaded, where there is one."""
    if directory is not None and (Path(directory) / BEST_WEIGHTS).exists():
        model.load_weights(Path(directory) / BEST_WEIGHTS)
    return model
