"""colorize/model.py and colorize/config.py: shapes, range, configuration checks."""

import dataclasses

import numpy as np
import pytest

from colorize.config import TrainConfig
from colorize.errors import ColorizeError
from colorize.model import build_unet, count_flops


@pytest.mark.parametrize("shape", [(2, 16, 16), (1, 24, 40)])
def test_output_shape_and_tanh_range(shape):
    model = build_unet(TrainConfig(image_size=16, depth=2, base_filters=4))
    out = np.asarray(model(np.random.default_rng(0).uniform(-0.5, 0.5, shape + (1,)).astype("float32")))
    assert out.shape == shape + (2,)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_a_coarse_bins_head_decodes_to_the_inputs_size(stride):
    from colorize import ab_bins
    from colorize.decoding import decode_ab

    config = TrainConfig(image_size=16, depth=3, base_filters=4, head="bins", output_stride=stride)
    model = build_unet(config)
    logits = np.asarray(model(np.zeros((2, 24, 40, 1), "float32")))
    assert logits.shape == (2, 24 // stride, 40 // stride, ab_bins.bin_count())
    ab = decode_ab(logits, config)
    assert ab.shape == (2, 24, 40, 2)
    if stride > 1:  # the decoder's finest levels are not built at all, so it costs less
        assert count_flops(config, 64) < count_flops(dataclasses.replace(config, output_stride=1), 64)


@pytest.mark.parametrize("stride", [2, 4])
def test_a_coarse_regression_head_resizes_its_ab_inside_the_model(stride):
    """The decoder stops early, and the model still returns a/b at the input's size in
    [-1, 1] (so the losses, calibration and inference need nothing new): the coarse a/b
    resized bilinearly, for fewer FLOPs."""
    import cv2
    import keras
    import tensorflow as tf

    config = TrainConfig(image_size=16, depth=3, base_filters=4, output_stride=stride)
    model = build_unet(config)
    assert not any(layer.name.startswith("dec0") for layer in model.layers)  # the finest level is not built
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 24, 40, 1)).astype("float32")
    out = np.asarray(model(x))
    assert out.shape == (2, 24, 40, 2)
    assert out.min() >= -1 and out.max() <= 1
    # Inference runs one graph for photos of every size: the resize must trace with unknown sides.
    any_size = tf.function(lambda batch: model(batch, training=False),
                           input_signature=[tf.TensorSpec((None, None, None, 1), tf.float32)])
    np.testing.assert_allclose(np.asarray(any_size(x)), out, atol=1e-6)
    coarse = np.asarray(keras.Model(model.input, model.get_layer("ab").output)(x))
    assert coarse.shape == (2, 24 // stride, 40 // stride, 2)
    resized = np.stack([cv2.resize(image, (40, 24), interpolation=cv2.INTER_LINEAR) for image in coarse])
    np.testing.assert_allclose(out, resized, atol=1e-5)  # half-pixel centres, as the bins head's decoding
    assert count_flops(config, 64) < count_flops(dataclasses.replace(config, output_stride=1), 64)


def test_an_older_artifacts_bins_stride_key_still_loads():
    assert TrainConfig.from_dict({"head": "bins", "bins_stride": 4}).output_stride == 4


def test_depth_filters_and_dropout_shape_the_network():
    small = build_unet(TrainConfig(depth=2, base_filters=4, image_size=16, batch_norm=False, dropout=0))
    large = build_unet(TrainConfig(depth=3, base_filters=8, image_size=16))
    assert small.count_params() < large.count_params()
    assert not any("bn" in layer.name for layer in small.layers)
    assert any("dropout" in layer.name for layer in large.layers)


def test_flops_scale_with_pixels():
    config = TrainConfig(image_size=32, depth=2, base_filters=4)
    assert count_flops(config, 64) == 4 * count_flops(config, 32)


@pytest.mark.parametrize("values, words", [
    ({"loss": "l1"}, "unknown loss"),
    ({"image_size": 30, "depth": 2}, "multiple of"),
    ({"batch_size": 0}, "batch_size"),
    ({"dropout": 1.5}, "dropout"),
    ({"colour": 1}, "unknown configuration key"),
    ({"batch_size": "many"}, "must be int"),
    ({"lr_decay": 0.0}, "lr_decay"),
    ({"colour_budget_db": -1}, "colour_budget_db"),
    ({"colour_target": 1.6}, "colour_target"),
    ({"colour_target": 0.6, "colour_budget_db": 0.2}, "not both"),
    ({"precision": "bf16"}, "precision"),
    ({"head": "bins", "output_stride": 3}, "output_stride must be one of"),
    ({"head": "bins", "output_stride": 4, "depth": 1, "image_size": 16}, "must not exceed"),
])
def test_bad_configuration_is_a_clear_error(values, words):
    with pytest.raises(ColorizeError, match=words):
        TrainConfig.from_dict(values)


def test_a_colour_budget_over_a_colour_target_replaces_it():
    """--colour-budget-db over the pretrained preset (which asks for a colour target) means
    that budget, not a clash; the same the other way round. Both at once stay an error."""
    from colorize import presets

    base = presets.load("pretrained")
    assert base.colour_target > 0 and base.colour_budget_db == 0
    budget = TrainConfig.from_dict({"colour_budget_db": 0.1}, base)
    assert (budget.colour_budget_db, budget.colour_target) == (0.1, 0.0)
    target = TrainConfig.from_dict({"colour_target": 0.6}, budget)
    assert (target.colour_budget_db, target.colour_target) == (0.0, 0.6)
    with pytest.raises(ColorizeError, match="not both"):
        TrainConfig.from_dict({"colour_target": 0.6, "colour_budget_db": 0.1}, base)


def test_config_from_file_accepts_tuning_output(tmp_path):
    path = tmp_path / "best_config.json"
    path.write_text('{"config": {"batch_size": 8, "loss": "ssim"}, "ssim_mean": 0.9}')
    config = TrainConfig.from_file(path)
    assert config.batch_size == 8 and config.loss == "ssim"
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ColorizeError, match="not found"):
        TrainConfig.from_file(tmp_path / "nope.json")


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batchnorm_computes_what_keras_batchnorm_does(policy):
    """Same outputs, moving statistics and gradients as Keras's layer, trained and not."""
    import keras
    import tensorflow as tf

    from colorize.model import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(0).normal(2, 3, (4, 8, 8, 5)).astype("float32"))
    rng = np.random.default_rng(1)
    weights = [rng.normal(1, 0.2, 5), rng.normal(0, 0.2, 5), rng.normal(0, 1, 5), rng.uniform(0.5, 2, 5)]
    layers_ = [keras.layers.BatchNormalization(dtype=policy), FusedBatchNormalization(dtype=policy)]
    outputs, input_grads, weight_grads = [], [], []
    for layer in layers_:
        layer.build(x.shape)
        layer.set_weights([w.astype("float32") for w in weights])
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") ** 2)
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        outputs.append(np.asarray(tf.cast(y, "float32")))
        input_grads.append(grads[0].numpy())
        weight_grads.append([g.numpy() for g in grads[1:]])
    keras_bn, fused = layers_
    assert fused(x).dtype == keras_bn(x).dtype
    tolerance = 1e-5 if policy == "float32" else 1e-2
    np.testing.assert_allclose(outputs[1], outputs[0], atol=tolerance * 10)
    np.testing.assert_allclose(input_grads[1], input_grads[0], atol=tolerance * 10)
    for ours, theirs in zip(weight_grads[1], weight_grads[0], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=tolerance)
    for ours, theirs in zip(fused.get_weights(), keras_bn.get_weights(), strict=True):  # moving mean/variance too
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(tf.cast(fused(x, training=False), "float32")),
                               np.asarray(tf.cast(keras_bn(x, training=False), "float32")), atol=tolerance * 10)
