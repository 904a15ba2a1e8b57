"""Colour calibration: after training, the one number that best matches the predicted
chroma to the truth on the validation split, stored in the artifact and applied at inference.

- regression head: the least-squares gain on a/b, g = sum(p t) / sum(p p);
- bins head: the annealed-mean temperature whose decoded a/b has the least squared error.

With `colour_budget_db` > 0 the calibration moves past that least-squares point towards
more colour, as far as the validation a/b PSNR allows: a larger gain (or a lower
temperature) whose squared error is at most 10^(budget/10) x the least. Near the optimum
the error grows with the square of the step, so a tenth of a dB buys a visible step in
colour (a model trained on squared error predicts the mean of the plausible colours, greyer
than any of them).

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


def least_squares_gain(pred_ab: np.ndarray, true_ab: np.ndarray, budget_db: float = 0.0) -> float:
    """The g minimising |g p - t|^2 over every pixel's a and b (1.0 when p is all zero), or
    with `budget_db` the larger g whose error is 10^(budget/10) x that minimum."""
    p, t = pred_ab.astype(np.float64).ravel(), true_ab.astype(np.float64).ravel()
    power = float(p @ p)
    if power == 0.0:
        return 1.0
    gain = (p @ t) / power
    # |g p - t|^2 = least + power (g - gain)^2: solve for the error the budget allows.
    least = max(float(t @ t) - gain * float(p @ t), 0.0)
    gain += np.sqrt(least * (10 ** (budget_db / 10) - 1) / power)
    return float(np.clip(gain, *GAIN_RANGE))


def best_temperature(logits: np.ndarray, true_ab: np.ndarray, grid=TEMPERATURES,
                     budget_db: float = 0.0) -> float:
    """The temperature of the grid whose annealed mean has the least squared a/b error, or
    with `budget_db` the lowest (most vivid) one within 10^(budget/10) x that error."""
    errors = np.array([float(np.mean((ab_bins.annealed_mean(logits, t) - true_ab) ** 2)) for t in grid])
    allowed = errors.min() * 10 ** (budget_db / 10)
    return float(min(t for t, e in zip(grid, errors, strict=True) if e <= allowed))


def calibrate(model, config: TrainConfig, val_tiles: np.ndarray) -> dict:
    """{"gain": g} for the regression head, {"temperature": T} for bins; {} when disabled."""
    from colorize.inference import predict_ab

    if not config.calibrate or not len(val_tiles):
        return {}
    _, l_norm, true_ab = data.eval_arrays(val_tiles, config.image_size)
    output = predict_ab(model, l_norm)
    if config.head == "bins":
        result = {"temperature": best_temperature(output, true_ab, budget_db=config.colour_budget_db)}
    else:
        result = {"gain": least_squares_gain(output, true_ab, config.colour_budget_db)}
    log.info("colour calibration on %d validation crops: %s", len(val_tiles), result)
    return result
