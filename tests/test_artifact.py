"""colorize/artifact.py: save/load round trip and clear refusals of non-artifacts."""

import json

import numpy as np
import pytest

from colorize.artifact import load_artifact, read_metadata, save_artifact
from colorize.config import TrainConfig
from colorize.errors import ColorizeError
from colorize.training import compile_model


def test_round_trip_gives_identical_predictions(tmp_path):
    config = TrainConfig(image_size=16, depth=2, base_filters=4, precision="float32")
    model = compile_model(config)
    save_artifact(tmp_path / "m", model, config, {"test": {"psnr": 1.0}}, {"source": "x"})
    loaded = load_artifact(tmp_path / "m", precision="float32")
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16, 24, 1)).astype("float32")
    assert np.array_equal(np.asarray(model(x, training=False)), np.asarray(loaded.model(x, training=False)))
    assert loaded.config == config
    meta = loaded.metadata
    assert meta["metrics"]["test"]["psnr"] == 1.0 and meta["data"]["source"] == "x"
    assert {"tensorflow", "keras", "colorize"} <= set(meta["versions"])


def test_non_artifacts_are_refused_clearly(tmp_path):
    with pytest.raises(ColorizeError, match="not a folder"):
        read_metadata(tmp_path / "missing")
    with pytest.raises(ColorizeError, match="no metadata.json"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.json").write_text("{broken")
    with pytest.raises(ColorizeError, match="corrupt"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ColorizeError, match="not a colorize model"):
        read_metadata(tmp_path)


def test_missing_model_file_is_reported(tmp_path):
    config = TrainConfig(image_size=16, depth=2, base_filters=4, precision="float32")
    save_artifact(tmp_path, compile_model(config), config)
    (tmp_path / "model.keras").unlink()
    with pytest.raises(ColorizeError, match="model.keras is missing"):
        load_artifact(tmp_path)


def test_mixed_precision_model_is_saved_as_float32(tmp_path):
    config = TrainConfig(image_size=16, depth=2, base_filters=4, precision="mixed_bfloat16")
    model = compile_model(config)
    assert model.get_layer("down0_conv1").compute_dtype == "bfloat16"
    save_artifact(tmp_path, model, config)
    loaded = load_artifact(tmp_path, precision="float32")  # exactly what the file holds
    assert loaded.model.get_layer("down0_conv1").compute_dtype == "float32"
    assert loaded.config.precision == "mixed_bfloat16"  # what it was trained with


@pytest.mark.parametrize("head, stride", [("regression", 1), ("regression", 4), ("bins", 1), ("bins", 4)])
def test_each_head_with_context_round_trips_with_its_calibration(tmp_path, head, stride):
    from colorize.inference import colorize_image

    config = TrainConfig(image_size=16, depth=2, base_filters=4, head=head, global_context=True,
                         output_stride=stride, precision="float32")  # compared exactly with the float32 artifact
    model = compile_model(config)
    calibration = {"temperature": 0.3} if head == "bins" else {"cast_gain": 1.2, "gain": 1.4}
    save_artifact(tmp_path / "m", model, config, calibration=calibration)
    loaded = load_artifact(tmp_path / "m", precision="float32")
    assert loaded.calibration == calibration and loaded.metadata["head"] == head
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16, 24, 1)).astype("float32")
    assert np.array_equal(np.asarray(model(x, training=False)), np.asarray(loaded.model(x, training=False)))
    photo = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    from colorize.artifact import Artifact

    in_memory = Artifact(model, config, {"calibration": calibration})
    coloured = colorize_image(loaded, photo)  # 20 x 30: not a multiple of the head's stride
    assert coloured.shape == photo.shape and np.array_equal(coloured, colorize_image(in_memory, photo))


def test_artifacts_without_calibration_still_load(tmp_path):
    """Artifacts of the previous format (regression head, no calibration key) keep working."""
    config = TrainConfig(image_size=16, depth=2, base_filters=4, precision="float32")
    save_artifact(tmp_path, compile_model(config), config)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    for key in ("calibration", "head"):
        meta.pop(key)
    for key in ("views", "global_context", "head", "temperature", "monitor", "colour_floor", "calibrate"):
        meta["config"].pop(key)
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    loaded = load_artifact(tmp_path)
    assert loaded.calibration == {} and loaded.config.head == "regression"


def test_artifacts_with_keras_batchnorm_still_load(tmp_path, monkeypatch):
    """Models saved before the fused BatchNorm (with Keras's own layer) load into this
    version's network and predict as they did."""
    import keras

    from colorize import model as model_module

    config = TrainConfig(image_size=16, depth=2, base_filters=4, precision="float32")
    with monkeypatch.context() as patch:
        patch.setattr(model_module, "FusedBatchNormalization", keras.layers.BatchNormalization)
        old = compile_model(config)
        save_artifact(tmp_path / "m", old, config)
    saved = keras.saving.load_model(tmp_path / "m" / "model.keras", compile=False)
    assert type(saved.get_layer("down0_bn1")) is keras.layers.BatchNormalization
    loaded = load_artifact(tmp_path / "m", precision="float32")
    assert type(loaded.model.get_layer("down0_bn1")) is model_module.FusedBatchNormalization
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16, 24, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded.model(x, training=False)),
                               np.asarray(old(x, training=False)), atol=1e-5)


def test_auto_precision_predicts_what_float32_does(tmp_path):
    """"auto" (bf16 on CPUs that compute it) changes colours by bf16 rounding, not more."""
    from colorize import precision

    config = TrainConfig(image_size=16, depth=2, base_filters=4, precision="float32")
    save_artifact(tmp_path / "m", compile_model(config), config)
    exact = load_artifact(tmp_path / "m", precision="float32")
    auto = load_artifact(tmp_path / "m")
    assert auto.model.get_layer("down0_conv1").dtype_policy.name == precision.resolve("auto")
    assert auto.model.get_layer("ab").dtype_policy.name == "float32"
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16, 24, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(auto.model(x, training=False)),
                               np.asarray(exact.model(x, training=False)), atol=0.02)
    with pytest.raises(ColorizeError, match="precision must be one of"):
        load_artifact(tmp_path / "m", precision="float64")
