"""colorize/calibration.py: the fitted gain and temperature recover known values."""

import numpy as np

from colorize import ab_bins, calibration


def test_least_squares_gain_recovers_a_known_gain():
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 0.2, (4, 16, 16, 2))
    truth = 1.6 * pred + rng.normal(0, 0.01, pred.shape)
    assert abs(calibration.least_squares_gain(pred, truth) - 1.6) < 0.01
    assert calibration.least_squares_gain(np.zeros_like(pred), truth) == 1.0  # nothing to scale


def test_best_temperature_recovers_a_known_temperature():
    logits = np.random.default_rng(1).normal(0, 3, (4, 8, 8, ab_bins.bin_count())).astype(np.float32)
    truth = ab_bins.annealed_mean(logits, 0.5)
    assert calibration.best_temperature(logits, truth) == 0.5
