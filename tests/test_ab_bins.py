"""colorize/ab_bins.py: the bins cover the sRGB gamut, soft targets, annealed-mean decoding."""

import numpy as np
import pytest

from colorize import ab_bins, lab
from colorize.config import TrainConfig
from colorize.losses import make_bins_loss


def random_ab(count: int, seed: int = 0) -> np.ndarray:
    """Normalised a/b of random sRGB colours (in gamut by construction)."""
    rgb = np.random.default_rng(seed).uniform(0, 1, (count, 1, 3)).astype(np.float32)
    return lab.split_lab(rgb)[1][:, 0]


def test_bins_cover_the_srgb_gamut_within_half_a_bin():
    centres = ab_bins.bin_centres() * lab.AB_SCALE
    assert 200 < len(centres) < 400  # a 10-unit grid over the gamut's ~190 x 200 Lab units
    ab = random_ab(5000) * lab.AB_SCALE
    nearest = centres[ab_bins.nearest_bin(ab / lab.AB_SCALE)]
    assert np.abs(nearest - ab).max() <= ab_bins.BIN_SIZE / 2 + 1e-3
    # and every bin is reached by some colour: none lies outside the gamut's cells
    assert len(np.unique(ab_bins.nearest_bin(random_ab(200_000, seed=1)))) > 0.9 * len(centres)


def test_soft_encoding_sums_to_one_over_the_nearest_bins():
    targets = np.asarray(ab_bins.soft_encode(random_ab(64).reshape(1, 8, 8, 2)))
    assert targets.shape == (1, 8, 8, ab_bins.bin_count())
    assert np.allclose(targets.sum(-1), 1.0, atol=1e-5)
    assert ((targets > 0).sum(-1) == ab_bins.NEIGHBOURS).all()
    nearest = ab_bins.nearest_bin(random_ab(64).reshape(1, 8, 8, 2))
    assert (targets.argmax(-1) == nearest).all()  # the heaviest weight is the nearest bin


def test_a_perfect_logit_map_decodes_to_the_truth_within_one_bin():
    ab = random_ab(100).reshape(10, 10, 2)
    logits = 20.0 * np.eye(ab_bins.bin_count())[ab_bins.nearest_bin(ab)]
    decoded = ab_bins.annealed_mean(logits, TrainConfig().temperature)
    assert np.abs(decoded - ab).max() * lab.AB_SCALE <= ab_bins.BIN_SIZE


def test_annealed_mean_goes_from_mode_to_mean():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (5, ab_bins.bin_count())).astype(np.float32)
    centres = ab_bins.bin_centres()
    mode = centres[logits.argmax(-1)]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    mean = (probs / probs.sum(-1, keepdims=True)) @ centres
    assert np.allclose(ab_bins.annealed_mean(logits, 1e-4), mode, atol=1e-4)
    assert np.allclose(ab_bins.annealed_mean(logits, 1.0), mean, atol=1e-5)


def test_rebalancing_weights_rare_bins_more():
    common = np.zeros((1, 32, 32, 2), np.float32)
    common[0, :2, :2] = 0.5  # a few saturated pixels among many neutral ones
    weights = ab_bins.class_weights(ab_bins.bin_prior(common), 0.5)
    neutral, saturated = ab_bins.nearest_bin(np.array([[0.0, 0.0], [0.5, 0.5]], np.float32))
    assert weights[saturated] > weights[neutral]


@pytest.mark.parametrize("rebalance", [False, True])
def test_cross_entropy_is_lowest_for_the_soft_targets(rebalance):
    ab = random_ab(64).reshape(1, 8, 8, 2)
    weights = ab_bins.class_weights(ab_bins.bin_prior(ab), 0.5) if rebalance else None
    loss = make_bins_loss(weights)
    target = np.asarray(ab_bins.soft_encode(ab))
    good = np.log(np.maximum(target, 1e-9)).astype(np.float32)
    wrong = np.roll(good, 7, axis=-1)
    assert float(np.mean(loss(ab, good))) < float(np.mean(loss(ab, wrong)))


def test_a_coarse_head_is_scored_against_each_blocks_mean_colour():
    """output_stride 2: logits at half resolution meet the soft encoding of each 2 x 2 block's
    mean a/b, exactly the full-resolution loss on the pooled truth."""
    ab = random_ab(256, seed=3).reshape(1, 16, 16, 2)
    pooled = ab.reshape(1, 8, 2, 8, 2, 2).mean(axis=(2, 4))
    logits = np.random.default_rng(4).normal(0, 2, (1, 8, 8, ab_bins.bin_count())).astype(np.float32)
    coarse = float(np.mean(make_bins_loss(stride=2)(ab, logits)))
    assert coarse == pytest.approx(float(np.mean(make_bins_loss()(pooled, logits))), rel=1e-5)
    assert coarse != pytest.approx(float(np.mean(make_bins_loss()(ab[:, ::2, ::2], logits))), rel=1e-3)
