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


def test_a_colour_budget_buys_colour_at_exactly_that_price():
    rng = np.random.default_rng(2)
    pred = rng.normal(0, 0.2, (4, 16, 16, 2))
    truth = 1.2 * pred + rng.normal(0, 0.1, pred.shape)

    def psnr(gain):
        return -10 * np.log10(np.mean((gain * pred - truth) ** 2))

    best = calibration.least_squares_gain(pred, truth)
    vivid = calibration.least_squares_gain(pred, truth, budget_db=0.2)
    assert vivid > best
    assert abs(psnr(best) - psnr(vivid) - 0.2) < 1e-6  # the price asked, no more, no less


def test_a_colour_budget_picks_a_lower_temperature_within_it():
    logits = np.random.default_rng(1).normal(0, 3, (4, 8, 8, ab_bins.bin_count())).astype(np.float32)
    noise = np.random.default_rng(3).normal(0, 0.05, (4, 8, 8, 2))
    truth = ab_bins.annealed_mean(logits, 0.5) + noise
    assert calibration.best_temperature(logits, truth) == 0.5
    vivid = calibration.best_temperature(logits, truth, budget_db=1.0)
    assert vivid < 0.5
    error = np.mean((ab_bins.annealed_mean(logits, vivid) - truth) ** 2)
    least = np.mean((ab_bins.annealed_mean(logits, 0.5) - truth) ** 2)
    assert error <= least * 10 ** 0.1 + 1e-12
