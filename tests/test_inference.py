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

TRAINING_MODULES = ("colorize.training", "colorize.data", "colorize.losses", "colorize.distributed")


def test_importing_inference_loads_no_training_code():
    code = (
        "import sys, colorize.inference, colorize.colorizer\n"
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
