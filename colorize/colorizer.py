"""Inference: any photo of any size in, a colour photo of the same size out.

The L channel stays at full resolution; the model runs at its working scale (short side
as in training), its a/b prediction is upsampled along the photo's own edges and joined to
the original L, so no detail is lost (the mechanics are in inference.py; this module adds the colour
strength). Used by the CLI, the report and the Serve endpoint.
"""

from __future__ import annotations

import math

import numpy as np

from colorize.errors import ColorizeError
from colorize.inference import Artifact, compose, predict_full_ab

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
    artifact: Artifact, images: list[np.ndarray], strength: float = 1.0, upsample: str = "guided"
) -> list[np.ndarray]:
    """Colorize several images, one forward pass per working shape.

    `strength` scales the predicted chroma (a/b) around grey: 0 gives the grey prediction
    exactly, 1 the model's own (calibrated) colour, larger values more vivid colour.
    `upsample` is one of inference.UPSAMPLERS ("bilinear" only to compare against)."""
    strength = check_strength(strength)
    return [compose(p, ab * strength) for p, ab in predict_full_ab(artifact, images, upsample)]


def colorize_batch_strengths(
    artifact: Artifact, images: list[np.ndarray], strengths: list[float]
) -> list[np.ndarray]:
    """`colorize_batch` with one strength per image, still one forward pass (a served
    batch mixes requests that asked for different strengths)."""
    strengths = [check_strength(s) for s in strengths]
    predictions = predict_full_ab(artifact, images)
    return [compose(p, ab * s) for (p, ab), s in zip(predictions, strengths, strict=True)]
