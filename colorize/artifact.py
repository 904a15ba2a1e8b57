"""The model artifact: a folder with `model.keras` and `metadata.json`, what Serve loads.

metadata.json holds the resolved configuration, the Lab normalisation, the metrics on
validation and test, a fingerprint of the data and the package versions, so inference
rebuilds everything from the artifact alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from colorize import __version__, lab
from colorize.config import TrainConfig
from colorize.errors import ColorizeError
from colorize.model import build_unet
from colorize.precision import INFERENCE_PRECISIONS

FORMAT = "colorize-model"
FORMAT_VERSION = 1
MODEL_FILE, METADATA_FILE = "model.keras", "metadata.json"


@dataclass
class Artifact:
    """A trained model with the configuration it needs at inference."""

    model: keras.Model
    config: TrainConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def calibration(self) -> dict[str, float]:
        """The colour calibration fitted after training (calibration.py); {} when none."""
        return self.metadata.get("calibration", {})


def package_versions() -> dict[str, str]:
    import cv2
    import numpy
    import tensorflow as tf

    return {
        "colorize": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "python": platform.python_version(),
    }


def save_artifact(
    directory: str | Path,
    model: keras.Model,
    config: TrainConfig,
    metrics: dict[str, Any] | None = None,
    data_info: dict[str, Any] | None = None,
    calibration: dict[str, float] | None = None,
) -> Path:
    """Write the artifact: an uncompiled float32 copy of the model (loadable without our
    losses, fast on any CPU, whatever precision it was trained in) and its metadata."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    clean = build_unet(dataclasses.replace(config, precision="float32"))
    clean.set_weights(model.get_weights())
    clean.save(directory / MODEL_FILE)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "normalisation": lab.NORMALISATION,
        "head": config.head,  # regression: tanh a/b; bins: logits over ab_bins' centres
        "calibration": calibration or {},  # applied at inference (decoding.py)
        "metrics": metrics or {},
        "data": data_info or {},
        "versions": package_versions(),
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return directory


# Models that ship inside the package (colorize/models/, with their card MODEL_CARD.md): a
# model argument that names one, where no folder of that name exists, means it.
SHIPPED = ("pretrained",)
SHIPPED_DIR = Path(__file__).resolve().parent / "models"


def model_dir(spec: str | Path) -> Path:
    """The folder of the model `spec` names: a folder, or a shipped model's name."""
    path = Path(spec).expanduser()
    if str(spec) in SHIPPED and not path.exists():
        return SHIPPED_DIR / str(spec)
    return path


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """metadata.json of an artifact (a folder, or a shipped model's name), checked;
    ColorizeError when it is not an artifact."""
    directory = model_dir(directory)
    hint = "give the folder written by 'colorize fit' or 'colorize train' (holding model.keras)"
    if not directory.is_dir():
        raise ColorizeError(f"model not found: {directory} is not a folder; {hint}", status=404)
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
    except FileNotFoundError:
        raise ColorizeError(f"{directory} is not a colorize model: no {METADATA_FILE}; {hint}") from None
    except json.JSONDecodeError as exc:
        raise ColorizeError(f"{directory / METADATA_FILE} is corrupt: {exc}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ColorizeError(f"{directory} is not a colorize model ({METADATA_FILE} has no format tag)")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ColorizeError(f"{directory} was written by a newer colorize; upgrade to load it")
    if metadata.get("normalisation") != lab.NORMALISATION:
        raise ColorizeError(f"{directory} uses a different Lab normalisation than this version")
    if not (directory / MODEL_FILE).is_file():
        raise ColorizeError(f"{directory} is incomplete: {MODEL_FILE} is missing")
    return metadata


def load_artifact(directory: str | Path, precision: str = "auto") -> Artifact:
    """The artifact, its model ready to predict in `precision`: "auto" (bf16 where the CPU
    computes it natively, float32 elsewhere; colorize/precision.py), or "float32", exactly
    what the file holds."""
    if precision not in INFERENCE_PRECISIONS:
        raise ColorizeError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    metadata = read_metadata(directory)
    directory = model_dir(directory)
    config = TrainConfig.from_dict(metadata["config"])
    try:
        model = keras.saving.load_model(directory / MODEL_FILE, compile=False)
    except Exception as exc:
        raise ColorizeError(f"could not load {directory / MODEL_FILE}: {exc}") from None
    return Artifact(_rebuilt(model, config, precision), config, metadata)


def _rebuilt(saved: keras.Model, config: TrainConfig, precision: str) -> keras.Model:
    """The saved weights in this version's network: its layers (the fused BatchNorm, even
    for an artifact saved with Keras's own) in `precision` (bf16's speed and its effect on
    the scores: docs/experiments.md); the saved model itself is returned where the weights
    do not fit the rebuilt network."""
    model = build_unet(dataclasses.replace(config, precision=precision))
    try:
        model.set_weights(saved.get_weights())
    except ValueError:
        return saved
    return model
