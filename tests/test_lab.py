"""colorize/lab.py: conversions and the normalisation pair."""

import numpy as np

from colorize import lab


def test_round_trip_rgb_lab_rgb(tiny_rgb_batch):
    back = lab.lab_to_rgb(lab.rgb_to_lab(tiny_rgb_batch))
    assert np.abs(lab.to_uint8(back).astype(int) - tiny_rgb_batch).max() <= 1


def test_normalised_ranges_fit_the_model():
    # Every sRGB colour: L lands in [-0.5, 0.5], a/b inside tanh's open range.
    levels = np.arange(0, 256, 15, dtype=np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels), -1).reshape(1, -1, 3)
    l_norm, ab = lab.split_lab(cube)
    assert l_norm.min() >= -0.5 - 1e-6 and l_norm.max() <= 0.5 + 1e-6
    assert np.abs(ab).max() < 1.0


def test_split_join_inverts(tiny_rgb_batch):
    l_norm, ab = lab.split_lab(tiny_rgb_batch)
    assert l_norm.shape[-1] == 1 and ab.shape[-1] == 2
    back = lab.to_uint8(lab.join_lab(l_norm, ab))
    assert np.abs(back.astype(int) - tiny_rgb_batch).max() <= 1


def test_normalise_pairs_are_inverse():
    values = np.linspace(-100, 100, 11, dtype=np.float32)
    assert np.allclose(lab.denormalize_ab(lab.normalize_ab(values)), values)
    assert np.allclose(lab.denormalize_l(lab.normalize_l(values)), values)


def test_grey_prediction_has_no_colour_and_keeps_lightness(tiny_rgb_batch):
    grey = lab.grey_rgb(tiny_rgb_batch[0])
    assert np.abs(grey[..., 0] - grey[..., 1]).max() < 1e-3
    assert np.abs(grey[..., 1] - grey[..., 2]).max() < 1e-3
    l_orig = lab.rgb_to_lab(tiny_rgb_batch[0])[..., 0]
    assert np.abs(lab.rgb_to_lab(grey)[..., 0] - l_orig).max() < 0.5


def test_16_bit_input_scales_like_8_bit():
    rgb8 = np.array([[[200, 100, 50]]], np.uint8)
    rgb16 = rgb8.astype(np.uint16) * 257
    assert np.allclose(lab.rgb_to_lab(rgb8), lab.rgb_to_lab(rgb16), atol=1e-3)
