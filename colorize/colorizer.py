"""Inference: any photo of any size in, a colour photo of the same size out.

The L channel stays at full resolution; the model runs at its working scale (short side
as in training), its a/b prediction is upsampled bilinearly and joined to the original L,
so no detail is lost. Used by the CLI, the plots, the report and the Serve endpoint.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from colorize import lab
from colorize.artifact import Artifact
from colorize.data import stored_side
from colorize.errors import ColorizeError
from colorize.images import split_alpha
from colorize.model import decode_ab
from colorize.training import predict_ab

MAX_ASPECT = 4  # the model's input never exceeds 4 x the working side on its long side
MAX_STRENGTH = 3.0  # colour strength: 0 = grey, 1 = the model's calibrated colour, 3 = triple


def check_strength(strength: float) -> float:
    """`strength` as a float in [0, MAX_STRENGTH]; ColorizeError (HTTP 422) otherwise."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= MAX_STRENGTH:  # also refuses NaN
        raise ColorizeError(
            f"strength must be a number from 0 (grey) to {MAX_STRENGTH:g}, 1 being the model's "
            f"calibrated colour; got {strength!r}",
            status=422,
        )
    return value


def colorize_image(artifact: Artifact, image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """One decoded image (grey, RGB, RGBA; uint8 or uint16) -> RGB or RGBA uint8, same size."""
    return colorize_batch(artifact, [image], strength)[0]


def colorize_batch(
    artifact: Artifact, images: list[np.ndarray], strength: float = 1.0
) -> list[np.ndarray]:
    """Colorize several images in one forward pass (padded to a common shape).

    `strength` scales the predicted chroma (a/b) around grey: 0 gives the grey prediction
    exactly, 1 the model's own (calibrated) colour, larger values more vivid colour."""
    strength = check_strength(strength)
    return [_compose(p, ab * strength) for p, ab in predict_full_ab(artifact, images)]


def colorize_batch_strengths(
    artifact: Artifact, images: list[np.ndarray], strengths: list[float]
) -> list[np.ndarray]:
    """`colorize_batch` with one strength per image, still one forward pass (a served
    batch mixes requests that asked for different strengths)."""
    strengths = [check_strength(s) for s in strengths]
    predictions = predict_full_ab(artifact, images)
    return [_compose(p, ab * s) for (p, ab), s in zip(predictions, strengths, strict=True)]


def predict_full_ab(artifact: Artifact, images: list[np.ndarray]) -> list[tuple[dict, np.ndarray]]:
    """Per image: its prepared planes (full-size normalised L, alpha) and the predicted
    normalised a/b upsampled to full size (H, W, 2)."""
    prepared = [_prepare(artifact, image) for image in images]
    multiple = 2**artifact.config.depth
    height = _round_up(max(p["small"].shape[0] for p in prepared), multiple)
    width = _round_up(max(p["small"].shape[1] for p in prepared), multiple)
    batch = np.stack([_pad(p["small"], height, width) for p in prepared])[..., None]
    ab_small = decode_ab(predict_ab(artifact.model, batch), artifact.config, artifact.calibration)
    return [(p, _upsample_ab(p, ab_small[i])) for i, p in enumerate(prepared)]


def _prepare(artifact: Artifact, image: np.ndarray) -> dict:
    rgb, alpha = split_alpha(image)
    l_norm = lab.split_lab(rgb)[0][..., 0]  # colour inputs become grey here: only L is used
    h, w = l_norm.shape
    side = stored_side(artifact.config.image_size)
    scale = side / min(h, w)
    small_h = max(1, min(round(h * scale), MAX_ASPECT * side))
    small_w = max(1, min(round(w * scale), MAX_ASPECT * side))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(l_norm, (small_w, small_h), interpolation=interpolation)
    return {"l": l_norm, "alpha": alpha, "small": small}


def _upsample_ab(prepared: dict, ab_padded: np.ndarray) -> np.ndarray:
    small_h, small_w = prepared["small"].shape
    h, w = prepared["l"].shape
    ab = cv2.resize(ab_padded[:small_h, :small_w], (w, h), interpolation=cv2.INTER_LINEAR)
    return ab.reshape(h, w, 2)  # cv2 drops a trailing axis of 1 for 1-pixel images


def _compose(prepared: dict, ab: np.ndarray) -> np.ndarray:
    rgb = lab.to_uint8(lab.join_lab(prepared["l"][..., None], ab))
    if prepared["alpha"] is not None:
        return np.dstack([rgb, prepared["alpha"]])
    return rgb


def _pad(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad to (height, width); edge-pad where the plane is too small to reflect."""
    pad_h, pad_w = height - plane.shape[0], width - plane.shape[1]
    mode = "reflect" if pad_h < plane.shape[0] and pad_w < plane.shape[1] else "edge"
    return np.pad(plane, ((0, pad_h), (0, pad_w)), mode=mode)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
