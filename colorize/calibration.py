"""Colour calibration: after training, the one number that best matches the predicted
chroma to the truth on the validation split, stored in the artifact and applied at inference.

- regression head: the least-squares gain on a/b, g = sum(p t) / sum(p p);
- bins head: the annealed-mean temperature whose decoded a/b has the least squared error.

Users move along the same axis with the colour strength (colorizer.check_strength).
"""

from __future__ import annotations

import logging

import numpy as np

from colorize import ab_bins, data
from colorize.config import TrainConfig

log = logging.getLogger(__name__)

GAIN_RANGE = (0.5, 3.0)  # a calibration outside this says the fit went wrong: clip it
TEMPERATURES = tuple(np.round(np.arange(0.1, 1.01, 0.05), 2))  # the bins head's search grid


def least_squares_gain(pred_ab: np.ndarray, true_ab: np.ndarray) -> float:
    """The g minimising |g p - t|^2 over every pixel's a and b (1.0 when p is all zero)."""
    p, t = pred_ab.astype(np.float64).ravel(), true_ab.astype(np.float64).ravel()
    power = float(p @ p)
    if power == 0.0:
        return 1.0
    return float(np.clip((p @ t) / power, *GAIN_RANGE))


def best_temperature(logits: np.ndarray, true_ab: np.ndarray, grid=TEMPERATURES) -> float:
    """The temperature of the grid whose annealed mean has the least squared a/b error."""
    errors = [float(np.mean((ab_bins.annealed_mean(logits, t) - true_ab) ** 2)) for t in grid]
    return float(grid[int(np.argmin(errors))])


def calibrate(model, config: TrainConfig, val_tiles: np.ndarray) -> dict:
    """{"gain": g} for the regression head, {"temperature": T} for bins; {} when disabled."""
    from colorize.inference import predict_ab

    if not config.calibrate or not len(val_tiles):
        return {}
    _, l_norm, true_ab = data.eval_arrays(val_tiles, config.image_size)
    output = predict_ab(model, l_norm)
    if config.head == "bins":
        result = {"temperature": best_temperature(output, true_ab)}
    else:
        result = {"gain": least_squares_gain(output, true_ab)}
    log.info("colour calibration on %d validation crops: %s", len(val_tiles), result)
    return result
