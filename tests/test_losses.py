"""colorize/losses.py: each loss is ~0 for a perfect prediction, positive otherwise; the
"rgb" loss is the squared error of the photo OpenCV would rebuild."""

import numpy as np
import pytest

from colorize import ab_bins, lab, losses
from colorize.config import LOSSES, TrainConfig


@pytest.fixture()
def ab_pair():
    """A (a/b, L) target as the dataset gives it, and a noisy a/b prediction of it."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(-0.6, 0.6, (2, 16, 16, 2)).astype("float32")
    l_norm = rng.uniform(-0.3, 0.3, (2, 16, 16, 1)).astype("float32")
    noisy = np.clip(truth + rng.normal(0, 0.2, truth.shape), -1, 1).astype("float32")
    return np.concatenate([truth, l_norm], axis=-1), noisy


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_zero_for_perfect_prediction(name, ab_pair):
    loss = losses.make_loss(TrainConfig(image_size=16, depth=2, loss=name))
    target, noisy = ab_pair
    assert float(np.mean(loss(target, target[..., :2]))) == pytest.approx(0, abs=1e-5)
    assert float(np.mean(loss(target, noisy))) > 1e-3


def test_srgb_from_lab_is_opencvs_conversion():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    rgb[0, 0, :4] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]]  # the gamut's corners
    l_norm, ab = lab.split_lab(rgb)
    wild = rng.uniform(-1, 1, ab.shape).astype(np.float32)  # mostly out of the gamut, where both clip
    for colours in (ab, wild):
        rebuilt = np.asarray(losses.srgb_from_lab(l_norm, colours))[0]
        assert np.abs(rebuilt - lab.join_lab(l_norm[0], colours[0])).max() < 1e-3


def test_the_rgb_loss_is_the_rebuilt_photos_squared_error(ab_pair):
    target, noisy = ab_pair
    loss = losses.make_loss(TrainConfig(image_size=16, depth=2, loss="rgb"))
    l_norm, truth = target[..., 2:], target[..., :2]
    expected = [np.mean((lab.join_lab(l_norm[i], noisy[i]) - lab.join_lab(l_norm[i], truth[i])) ** 2) for i in range(2)]
    assert np.asarray(loss(target, noisy)) == pytest.approx(expected, rel=0.02)
    # dark pixels weigh less than mid-grey ones for the same a/b error: the point of the loss
    dark, mid = (np.concatenate([truth, np.full_like(l_norm, v)], axis=-1) for v in (-0.45, 0.1))
    assert float(np.mean(loss(dark, noisy))) < 0.5 * float(np.mean(loss(mid, noisy)))
    with pytest.raises(ValueError, match="needs the"):
        loss(truth, noisy)


def test_the_psnr_loss_is_each_crops_shortfall_from_40_db(ab_pair):
    target, noisy = ab_pair
    rgb = losses.make_loss(TrainConfig(image_size=16, depth=2, loss="rgb"))
    psnr = losses.make_loss(TrainConfig(image_size=16, depth=2, loss="psnr"))
    mse = np.asarray(rgb(target, noisy))
    assert np.asarray(psnr(target, noisy)) == pytest.approx(40 + 10 * np.log10(mse + 1e-4), abs=1e-3)


def test_rebalancing_weights_rare_colours_more(ab_pair):
    truth, _ = ab_pair
    common = np.zeros((1, 32, 32, 2), np.float32)
    common[0, :2, :2] = 0.7  # a few saturated pixels among many neutral ones
    weights = losses.rebalance_weights(common, 0.5)
    neutral, saturated = ab_bins.grid_index(np.array([[0.0, 0.0], [0.7, 0.7]], np.float32))
    assert weights[saturated] > 5 * weights[neutral]
    counts = np.bincount(ab_bins.grid_index(common).ravel(), minlength=weights.size)
    assert np.isclose(np.sum(weights * counts) / counts.sum(), 1.0, rtol=1e-4)
    config = TrainConfig(image_size=16, depth=2, rebalance=0.5)
    weighted = losses.make_loss(config, weights)
    assert float(np.mean(weighted(truth, truth[..., :2]))) == pytest.approx(0, abs=1e-6)


def test_rebalancing_strength_grows_with_the_option():
    ab = np.zeros((1, 32, 32, 2), np.float32)
    ab[0, :2, :2] = 0.7
    neutral, saturated = ab_bins.grid_index(np.array([[0.0, 0.0], [0.7, 0.7]], np.float32))
    ratios = [(w[saturated] / w[neutral]) for w in (losses.rebalance_weights(ab, s) for s in (0.0, 0.5, 0.95))]
    assert ratios[0] == pytest.approx(1.0)  # 0 weighs every colour alike
    assert ratios[0] < ratios[1] < ratios[2]


def test_join_target_is_split_targets_inverse():
    ab = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 2))
    l_norm = np.random.default_rng(1).uniform(0, 1, (2, 4, 4, 1))
    target = losses.join_target(ab, l_norm)
    assert target.dtype == np.float32 and target.shape == (2, 4, 4, 3)
    back_ab, back_l = losses.split_target(target)
    np.testing.assert_allclose(back_ab, ab, rtol=1e-6)
    np.testing.assert_allclose(back_l, l_norm, rtol=1e-6)
