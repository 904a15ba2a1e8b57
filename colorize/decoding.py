"""The heads' output -> a/b: what inference and training's validation both decode with.

The regression head's output is a/b already; the bins head's (ab_bins.py) is logits over
the colour bins, decoded by their annealed mean at the calibrated temperature. Then the
calibration's gains (calibration.apply_gains). A new head (model.py's `build_unet`) gets
its decoding here, and inference needs no change.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from colorize import ab_bins
from colorize.calibration import apply_gains
from colorize.config import TrainConfig


def output_ab(output: np.ndarray, config: TrainConfig, calibration: dict | None = None) -> np.ndarray:
    """The model's raw output (N, h, w, channels) or (h, w, channels) -> normalised a/b at the
    input's size, before the gains: the regression head's a/b (resized inside the model), or
    the bins head's annealed mean at the calibrated temperature, resized up bilinearly from
    (h, w) = the input's size / output_stride if coarse (the mean comes first: logits do not
    interpolate)."""
    calibration = calibration or {}
    if config.head != "bins":
        return output
    ab = ab_bins.annealed_mean(output, calibration.get("temperature", config.temperature))
    stride = config.output_stride
    if stride == 1:
        return ab

    def resize(plane):  # half-pixel centres: each coarse pixel is the mean of its stride^2 block
        return cv2.resize(plane, (plane.shape[1] * stride, plane.shape[0] * stride), interpolation=cv2.INTER_LINEAR)

    return np.stack([resize(plane) for plane in ab]) if ab.ndim == 4 else resize(ab)


def decoder_at_temperature(config: TrainConfig) -> Callable[[np.ndarray, float], np.ndarray]:
    """(bins logits, T) -> a/b at the input's size: what the temperature is searched with."""
    return lambda logits, temperature: output_ab(logits, config, {"temperature": temperature})


def decode_ab(output: np.ndarray, config: TrainConfig, calibration: dict | None = None) -> np.ndarray:
    """The model's raw output for whole images (..., h, w, channels) -> normalised a/b at the
    input's size (output_ab) with the calibration's gains on a/b (calibration.py). The gains
    use each image's mean a/b: with padded inputs, crop output_ab's result and apply them."""
    return apply_gains(output_ab(output, config, calibration), calibration or {})
