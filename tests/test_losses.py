"""colorize/losses.py: each loss is ~0 for a perfect prediction, positive otherwise."""

import numpy as np
import pytest

from colorize import losses
from colorize.config import LOSSES, TrainConfig


@pytest.fixture()
def ab_pair():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-0.6, 0.6, (2, 16, 16, 2)).astype("float32")
    return truth, np.clip(truth + rng.normal(0, 0.2, truth.shape), -1, 1).astype("float32")


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_zero_for_perfect_prediction(name, ab_pair):
    loss = losses.make_loss(TrainConfig(image_size=16, depth=2, loss=name))
    truth, noisy = ab_pair
    assert float(np.mean(loss(truth, truth))) == pytest.approx(0, abs=1e-5)
    assert float(np.mean(loss(truth, noisy))) > 1e-3


def test_rebalancing_weights_rare_colours_more(ab_pair):
    truth, _ = ab_pair
    common = np.zeros((1, 32, 32, 2), np.float32)
    common[0, :2, :2] = 0.7  # a few saturated pixels among many neutral ones
    weights = losses.rebalance_weights(common, 0.5)
    neutral, saturated = losses.ab_bin_index(np.array([[0.0, 0.0], [0.7, 0.7]], np.float32))
    assert weights[saturated] > 5 * weights[neutral]
    counts = np.bincount(losses.ab_bin_index(common).ravel(), minlength=weights.size)
    assert np.isclose(np.sum(weights * counts) / counts.sum(), 1.0, rtol=1e-4)
    config = TrainConfig(image_size=16, depth=2, rebalance=0.5)
    weighted = losses.make_loss(config, weights)
    assert float(np.mean(weighted(truth, truth))) == pytest.approx(0, abs=1e-6)


def test_rebalancing_strength_grows_with_the_option():
    ab = np.zeros((1, 32, 32, 2), np.float32)
    ab[0, :2, :2] = 0.7
    neutral, saturated = losses.ab_bin_index(np.array([[0.0, 0.0], [0.7, 0.7]], np.float32))
    ratios = [(w[saturated] / w[neutral]) for w in (losses.rebalance_weights(ab, s) for s in (0.0, 0.5, 0.95))]
    assert ratios[0] == pytest.approx(1.0)  # 0 weighs every colour alike
    assert ratios[0] < ratios[1] < ratios[2]
