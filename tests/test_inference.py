"""colorize/inference.py stands alone (no training code in a replica) and feeds the model
the L that training feeds it for the same photo."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, make_photo

from colorize import data, lab
from colorize.config import TrainConfig
from colorize.inference import Artifact, prepare, working_side

TRAINING_MODULES = ("colorize.training", "colorize.data", "colorize.losses", "colorize.distributed",
                    "colorize.fit_run", "colorize.prepared_data")


def test_importing_inference_loads_no_training_code():
    code = (
        "import sys, colorize.inference\n"
        f"print(sorted(m for m in {TRAINING_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


@pytest.mark.parametrize("shape", [(48, 80), (200, 130), (20, 31), (1000, 1900)])
def test_training_tiles_and_inference_see_the_same_lightness(shape):
    """Training resizes RGB then converts (tiles are RGB), inference converts then resizes
    L (so colour and grey inputs agree): same scale, same geometry, same interpolation, so
    the L the model sees differs by no more than uint8 rounding and the Lab curve's bend
    at sharp edges."""
    config = TrainConfig(image_size=32)
    rgb = make_photo(np.random.default_rng(5), *shape)
    side = working_side(config.image_size)
    tiles = data.tile_photo(rgb, side)  # two or more tiles: the first starts at the corner
    small = prepare(Artifact(model=None, config=config), rgb)["small"]  # the model's input
    assert len(tiles) > 1 and min(small.shape) == side
    assert tiles[-1].shape[:2] == (side, side)
    tile_l = lab.split_lab(tiles[0])[0][..., 0]
    gap = np.abs(tile_l - small[:side, :side]) * lab.L_SCALE  # in L units (0..100)
    assert gap.mean() < 0.25 and gap.max() < 3.0


def test_the_compiled_forward_pass_matches_keras_and_lets_models_go():
    """predict_ab runs the model as one graph (any shape, bounded traces) with the same
    output as Keras's own call, and its cache does not keep a model alive."""
    import gc
    import weakref

    from colorize import inference
    from colorize.model import build_unet

    model = build_unet(TrainConfig(image_size=16, depth=2, base_filters=4, precision="float32"))
    rng = np.random.default_rng(0)
    for shape in [(1, 16, 16, 1), (2, 16, 24, 1), (3, 32, 16, 1), (1, 16, 16, 1)]:
        x = rng.uniform(-0.5, 0.5, shape).astype("float32")
        np.testing.assert_allclose(inference.predict_ab(model, x), np.asarray(model(x, training=False)),
                                   atol=1e-5)
    assert inference._COMPILED[model].experimental_get_tracing_count() <= 3
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


def _edge_photo(height: int = 241, width: int = 361, edge: int = 157):
    """A photo's prepared planes with one vertical edge off the working scale's grid: dark and
    blue-ish on its left, bright and yellow-ish on its right. Returns (prepared, the true
    full-size a/b, the working-scale a/b a perfect model would predict)."""
    from colorize.preprocess import resize_short_side

    l_full = np.full((height, width), -0.2, np.float32)
    l_full[:, edge:] = 0.25
    ab_full = np.zeros((height, width, 2), np.float32)
    ab_full[:, :edge] = (0.05, -0.3)
    ab_full[:, edge:] = (-0.02, 0.35)
    side = working_side(32)
    small = resize_short_side(l_full, side)
    ab_small = resize_short_side(ab_full, side)  # area-averaged, as training tiles are
    return {"l": l_full, "small": small, "alpha": None}, ab_full, ab_small


def test_guided_upsampling_puts_colour_edges_on_the_photos_own_edges():
    """At 4-7x, bilinear upsampling bleeds colour across an edge the L channel draws
    sharply; the guided upsampler follows the full-resolution L, so the colour switches
    where the lightness does."""
    from colorize.inference import upsample_ab

    prepared, truth, ab_small = _edge_photo()
    assert prepared["l"].shape[0] / prepared["small"].shape[0] > 4
    near_edge = slice(157 - 12, 157 + 12)
    errors = {}
    for method in ("bilinear", "guided"):
        out = upsample_ab(prepared, ab_small, method)
        assert out.shape == truth.shape
        errors[method] = float(np.abs(out - truth)[:, near_edge].mean())
    assert errors["guided"] < 0.35 * errors["bilinear"], errors
    # Away from the edge both give the flat colour back.
    guided = upsample_ab(prepared, ab_small, "guided")
    np.testing.assert_allclose(guided[:, :100], truth[:, :100], atol=1e-3)
    np.testing.assert_allclose(guided[:, 220:], truth[:, 220:], atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (3, 200), (50, 50)])
def test_guided_upsampling_keeps_flat_colour_flat_at_any_shape(shape):
    """A uniform prediction stays exactly uniform (no halo from the lightness's texture),
    including images too small to filter."""
    from colorize.inference import upsample_ab
    from colorize.preprocess import resize_short_side

    rng = np.random.default_rng(3)
    l_full = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    small = resize_short_side(l_full, working_side(16))
    ab_small = np.full(small.shape + (2,), (0.1, -0.2), np.float32)
    out = upsample_ab({"l": l_full, "small": small, "alpha": None}, ab_small, "guided")
    assert out.shape == shape + (2,)
    np.testing.assert_allclose(out, np.broadcast_to((0.1, -0.2), out.shape), atol=1e-5)


def test_an_unknown_upsampler_is_refused():
    from colorize.inference import predict_full_ab

    with pytest.raises(ValueError, match="upsample must be one of"):
        predict_full_ab(Artifact(model=None, config=TrainConfig(image_size=32)), [], "nearest")


def test_the_cast_gain_sees_only_the_photos_own_pixels():
    """A photo whose working scale is padded to the model's multiple: the calibration's
    cast is the mean a/b over the photo, not over its padding. With a cast gain of 1 and a
    deviation gain of 2, full-size output = 2 x uncalibrated - cast (upsampling is linear
    and keeps a constant), so that cast must be flat and equal the photo's own mean."""
    import keras

    from colorize import inference
    from colorize.model import build_unet

    keras.utils.set_random_seed(0)
    config = TrainConfig(image_size=16, depth=3, base_filters=4, precision="float32")
    model = build_unet(config)
    head = next(layer for layer in reversed(model.layers) if layer.weights)
    head.set_weights([w * 30 for w in head.get_weights()])  # colours far enough from grey to tell
    photo = make_photo(np.random.default_rng(6), 20, 31)  # working scale 18 x 28, padded to 24 x 32
    plain = inference.predict_full_ab(Artifact(model, config, {}), [photo], "bilinear")[0][1]
    calibrated = Artifact(model, config, {"calibration": {"cast_gain": 1.0, "gain": 2.0}})
    prepared, vivid = inference.predict_full_ab(calibrated, [photo], "bilinear")[0]
    small = prepared["small"]
    padded = inference._pad(small, *(inference._round_up(n, 8) for n in small.shape))
    assert padded.shape != small.shape
    raw = inference.predict_ab(model, padded[None, ..., None])[0]
    own_cast = raw[: small.shape[0], : small.shape[1]].mean(axis=(0, 1))
    assert np.abs(own_cast - raw.mean(axis=(0, 1))).max() > 1e-3  # padding would move it
    np.testing.assert_allclose(2 * plain - vivid, np.broadcast_to(own_cast, vivid.shape), atol=1e-4)
