"""colorize/inference.py's colorize_batch (once colorizer.py): any size and layout in, the same size out, L kept at full resolution."""

import numpy as np
import pytest

from colorize import lab
from colorize.artifact import load_artifact
from colorize.inference import colorize_batch, colorize_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact(tiny_artifact):
    return load_artifact(tiny_artifact)


@pytest.mark.parametrize("shape", [(333, 517), (7, 5), (1, 1), (40, 40), (5, 300)])
def test_keeps_the_size_of_odd_shapes(artifact, shape):
    rgb = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    out = colorize_image(artifact, rgb)
    assert out.shape == shape + (3,) and out.dtype == np.uint8


def test_lightness_is_the_inputs_at_full_resolution(artifact):
    rgb = np.random.default_rng(1).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    out = colorize_image(artifact, rgb)
    l_in, l_out = lab.rgb_to_lab(rgb)[..., 0], lab.rgb_to_lab(out)[..., 0]
    # Equal up to uint8 rounding and gamut clipping: detail is never blurred away.
    assert np.median(np.abs(l_in - l_out)) < 1.0


def test_greyscale_rgba_and_16_bit_inputs(artifact):
    grey = np.tile(np.arange(50, dtype=np.uint8) * 5, (30, 1))
    assert colorize_image(artifact, grey).shape == (30, 50, 3)
    rgba = np.dstack([np.full((20, 10, 3), 90, np.uint8), np.full((20, 10), 77, np.uint8)])
    out = colorize_image(artifact, rgba)
    assert out.shape == (20, 10, 4) and (out[..., 3] == 77).all()
    deep = np.full((9, 12, 3), 40000, np.uint16)
    assert colorize_image(artifact, deep).dtype == np.uint8


def test_colour_input_is_treated_as_grey(artifact):
    rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grey = lab.to_uint8(lab.grey_rgb(rgb))
    assert np.abs(colorize_image(artifact, rgb).astype(int) - colorize_image(artifact, grey)).max() <= 2


def test_batch_matches_single_images(artifact):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in [(36, 36), (36, 36)]]
    batch = colorize_batch(artifact, images)
    for image, out in zip(images, batch, strict=True):
        assert np.abs(out.astype(int) - colorize_image(artifact, image)).max() <= 1


def test_strength_zero_is_the_grey_prediction_exactly(artifact):
    rgb = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    grey = lab.to_uint8(lab.grey_rgb(rgb))
    assert np.array_equal(colorize_image(artifact, rgb, strength=0.0), grey)
    assert np.array_equal(colorize_image(artifact, rgb, strength=1), colorize_image(artifact, rgb))


@pytest.mark.parametrize("bad", [-0.1, 3.5, float("nan"), "vivid", None])
def test_bad_strengths_are_refused_with_a_422(artifact, bad):
    from colorize.errors import ColorizeError

    with pytest.raises(ColorizeError, match="strength must be a number from 0") as info:
        colorize_image(artifact, np.zeros((8, 8, 3), np.uint8), strength=bad)
    assert info.value.status == 422


def test_a_photo_gets_the_same_colours_in_a_batch_of_other_shapes_as_alone(artifact):
    """Portrait, landscape and square photos in one call: each runs at its own working shape
    (no padding to the largest), so its colours do not depend on its batch mates."""
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in [(60, 36), (36, 60), (36, 36), (60, 36)]]
    batch = colorize_batch(artifact, images)
    for image, out in zip(images, batch, strict=True):
        assert out.shape[:2] == image.shape[:2]
        assert np.abs(out.astype(int) - colorize_image(artifact, image)).max() <= 1
