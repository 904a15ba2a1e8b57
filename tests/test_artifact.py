"""colorize/artifact.py: save/load round trip and clear refusals of non-artifacts."""

import json

import numpy as np
import pytest

from colorize.artifact import load_artifact, read_metadata, save_artifact
from colorize.config import TrainConfig
from colorize.errors import ColorizeError
from colorize.training import compile_model


def test_round_trip_gives_identical_predictions(tmp_path):
    config = TrainConfig(image_size=16, depth=2, base_filters=4)
    model = compile_model(config)
    save_artifact(tmp_path / "m", model, config, {"test": {"psnr": 1.0}}, {"source": "x"})
    loaded = load_artifact(tmp_path / "m")
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
    config = TrainConfig(image_size=16, depth=2, base_filters=4)
    save_artifact(tmp_path, compile_model(config), config)
    (tmp_path / "model.keras").unlink()
    with pytest.raises(ColorizeError, match="model.keras is missing"):
        load_artifact(tmp_path)


def test_mixed_precision_model_is_saved_as_float32(tmp_path):
    config = TrainConfig(image_size=16, depth=2, base_filters=4, precision="mixed_bfloat16")
    model = compile_model(config)
    assert model.get_layer("down0_conv1").compute_dtype == "bfloat16"
    save_artifact(tmp_path, model, config)
    loaded = load_artifact(tmp_path)
    assert loaded.model.get_layer("down0_conv1").compute_dtype == "float32"
    assert loaded.config.precision == "mixed_bfloat16"  # what it was trained with
