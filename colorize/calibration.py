"""Colour calibration: after training, the numbers that best match the predicted chroma
to the truth on the validation split, stored in the artifact and applied at inference.

- regression head: two least-squares gains on a/b, one on each photo's mean a/b (its
  overall tint, "cast_gain") and one on the a/b's deviation from that mean (the colours
  that tell sky from grass, "gain"). A model trained on squared error shrinks the two
  by different amounts, and one gain on both, the calibration of artifacts saved before "cast_gain" and still read that
  way, spends colour on the tint as much as on the colours;
- bins head: the annealed-mean temperature whose decoded a/b has the least squared error,
  then the same two gains on that a/b. A lower temperature (the distribution's mode rather
  than its mean) is not where the colour is: an unsure plain head's mode is as grey as its
  mean, and the bins head scaled by a gain lands on the regression head's curve
  (docs/experiments.md, "the bins head at a quarter of the resolution").

With `colour_budget_db` > 0 the calibration moves past that least-squares point towards
more colour, as far as the validation a/b PSNR allows: gains whose squared error is at
most 10^(budget/10) x the least, the two gains sharing that error in whichever of
BUDGET_SPLITS ways gives the validation crops the most colourfulness.
Near the optimum the error grows with the square of the step, so a small budget buys a
visible step in colour (a model trained on squared error predicts the mean of the
plausible colours, greyer than any of them). How two gains compare with one:
docs/experiments.md.

With `colour_target` > 0 the calibration asks for an outcome instead of a price: the least
error (the smallest budget) whose validation photos reach that share of their truth's
colourfulness. The gains are fitted on the validation crops; `colorize fit` measures the
target on the whole validation photos as inference colours them (training.WholeValidation),
the crops' colour being a poor guide to the whole photos'. Why the `photos` recipe keeps a
budget and the `pretrained` recipe asks for a target: docs/experiments.md.

The search over the validation split (`fit_run.calibrate`) runs after training; this module is
the arithmetic alone (NumPy), so that inference applies the gains without loading training.
Users move along the same axis with the colour strength (inference.check_strength).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from colorize import ab_bins

log = logging.getLogger(__name__)

GAIN_RANGE = (0.5, 3.0)  # a calibration outside this says the fit went wrong: clip it
BUDGET_SPLITS = 9  # ways of sharing a colour budget between the cast and deviation gains
MAX_BUDGET_DB = 3.0  # the most validation a/b PSNR a colour target may spend
TARGET_STEPS = 10  # bisections of the budget for a colour target: 3 dB / 2^10, 0.003 dB
TEMPERATURES = tuple(np.round(np.arange(0.1, 1.01, 0.05), 2))  # the bins head's search grid


def split_cast(ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a/b (..., H, W, 2) -> each image's mean a/b (..., 1, 1, 2), its cast, and the
    deviation from it (..., H, W, 2)."""
    cast = ab.mean(axis=(-3, -2), keepdims=True)
    return cast, ab - cast


def least_squares_gains(pred_ab: np.ndarray, true_ab: np.ndarray, budget_db: float = 0.0,
                        colourfulness: Callable[[dict], float] | None = None) -> dict:
    """{"cast_gain": k, "gain": g}: the pair minimising |k m + g d - t|^2 over every
    pixel's a and b, m each crop's mean predicted a/b and d the deviation from it (a gain
    is 1.0 where its part is all zero). Each crop's d sums to zero, so m and d are
    orthogonal and the two gains are fitted apart.

    With `budget_db` the gains grow until the error is 10^(budget/10) x that minimum: the
    deviation's alone, or with `colourfulness` (gains -> the colourfulness they give) the
    split of that error between the two that it scores highest (BUDGET_SPLITS tried)."""
    p, t = pred_ab.astype(np.float64), true_ab.astype(np.float64)
    cast, deviation = split_cast(p)
    parts = (np.broadcast_to(cast, p.shape), deviation)
    powers = [float(np.sum(part * part)) for part in parts]
    overlaps = [float(np.sum(part * t)) for part in parts]
    best = [o / w if w else 1.0 for o, w in zip(overlaps, powers, strict=True)]
    least = max(float(np.sum(t * t)) - sum(b * o for b, o in zip(best, overlaps, strict=True)), 0.0)
    # |k m + g d - t|^2 = least + Pm (k - k*)^2 + Pd (g - g*)^2: every split on this
    # ellipse costs exactly the error the budget allows.
    extra = least * (10 ** (budget_db / 10) - 1)
    splits = np.linspace(0.0, np.pi / 2, BUDGET_SPLITS) if colourfulness else [0.0]
    candidates = []
    for angle in splits:
        steps = [np.sqrt(extra / w) * f if w else 0.0
                 for w, f in zip(powers, (np.sin(angle), np.cos(angle)), strict=True)]
        k, g = (float(np.clip(b + s, *GAIN_RANGE)) for b, s in zip(best, steps, strict=True))
        candidates.append({"cast_gain": k, "gain": g})
    if colourfulness is None or len(candidates) == 1 or extra == 0.0:
        return candidates[0]
    return max(candidates, key=colourfulness)


def gains_for_target(pred_ab: np.ndarray, true_ab: np.ndarray, target: float,
                     colourfulness: Callable[[dict], float]) -> dict:
    """The gains of the smallest budget (least_squares_gains) whose colourfulness reaches
    `target`, by bisection (more budget, more colour); the least-squares gains if they
    already do, the MAX_BUDGET_DB gains (with a warning) if even those fall short."""
    def at(budget_db: float) -> tuple[dict, float]:
        gains = least_squares_gains(pred_ab, true_ab, budget_db, colourfulness)
        return gains, colourfulness(gains)

    gains, reached = at(0.0)
    if reached >= target:
        return gains
    enough, reached = at(MAX_BUDGET_DB)
    if reached < target:
        log.warning("colour target %.1f not reached within %g dB (%.1f): keeping that", target,
                    MAX_BUDGET_DB, reached)
        return enough
    low, high = 0.0, MAX_BUDGET_DB
    for _ in range(TARGET_STEPS):
        middle = (low + high) / 2
        gains, reached = at(middle)
        if reached >= target:
            high, enough = middle, gains
        else:
            low = middle
    return enough


def apply_gains(ab: np.ndarray, calibration: dict) -> np.ndarray:
    """The regression calibration on whole images' a/b (..., H, W, 2). Without "cast_gain"
    (artifacts saved before it) the one "gain" scales all of a/b."""
    gain = calibration.get("gain", 1.0)
    cast_gain = calibration.get("cast_gain", gain)
    if cast_gain == gain:
        return ab * gain if gain != 1.0 else ab
    cast, deviation = split_cast(ab)
    return (cast * cast_gain + deviation * gain).astype(ab.dtype, copy=False)


def best_temperature(logits: np.ndarray, true_ab: np.ndarray, grid=TEMPERATURES,
                     decode: Callable[[np.ndarray, float], np.ndarray] = ab_bins.annealed_mean) -> float:
    """The temperature of the grid whose annealed mean has the least squared a/b error.
    `decode(logits, T)` gives a/b of `true_ab`'s size (a coarse head resizes)."""
    errors = [float(np.mean((decode(logits, t) - true_ab) ** 2)) for t in grid]
    return float(grid[int(np.argmin(errors))])
