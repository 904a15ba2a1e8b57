"""The U-Net-like autoencoder: L channel in, a/b out (regression head) or a/b bin logits
(bins head, see ab_bins.py).

Fully convolutional: any input whose sides are multiples of 2**depth works, so one
trained model colorizes photos of any size (see colorizer.py). With `global_context` a
whole-image feature vector is fused into every bottleneck position (Iizuka et al. 2016),
so the scene, not only the neighbourhood, decides the palette.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import keras
import numpy as np
from keras import layers, ops

from colorize import ab_bins, precision
from colorize.calibration import apply_gains
from colorize.config import TrainConfig


@keras.saving.register_keras_serializable(package="colorize")
class BroadcastConcat(layers.Layer):
    """[(B, H, W, C) features, (B, D) vector] -> (B, H, W, C + D): the vector at every pixel."""

    def call(self, inputs):
        features, vector = inputs
        shape = ops.shape(features)
        tiled = ops.broadcast_to(vector[:, None, None, :], (shape[0], shape[1], shape[2], ops.shape(vector)[-1]))
        return ops.concatenate([features, ops.cast(tiled, features.dtype)], axis=-1)

    def compute_output_shape(self, input_shapes):
        features, vector = input_shapes
        return (*features[:3], features[3] + vector[-1])


@keras.saving.register_keras_serializable(package="colorize")
class ResizeUp(layers.Layer):
    """(B, h, w, C) -> (B, h * factor, w * factor, C), bilinear with half-pixel centres (as
    cv2's INTER_LINEAR). Keras's UpSampling2D cannot be traced with unknown sides, and
    inference runs one graph for photos of every size (inference._forward)."""

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        import tensorflow as tf

        size = tf.shape(inputs)[1:3] * self.factor
        return tf.cast(tf.image.resize(inputs, size, method="bilinear"), inputs.dtype)

    def compute_output_shape(self, input_shape):
        batch, h, w, channels = input_shape
        return (batch, None if h is None else h * self.factor, None if w is None else w * self.factor, channels)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="colorize")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization (same weights, same update rule) computed by TensorFlow's
    fused kernel: one op forward and one backward instead of Keras's separate moments,
    casts and arithmetic, which are memory-bound (and, under mixed precision, upcast every
    bf16 activation to float32): fused, a step trains 1.2-1.3x faster in float32 and
    1.3-1.9x in bf16 on the 2-core AMX CPU (bench/README.md, *Model throughput*). In inference TensorFlow folds it into the
    convolution before it. Other backends, masks and renorm take Keras's own path."""

    def call(self, inputs, training=None, mask=None):
        if (keras.backend.backend() != "tensorflow" or mask is not None or self.renorm
                or len(inputs.shape) != 4 or self.axis not in (-1, 3) or not (self.scale and self.center)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = ops.cast(inputs, self.compute_dtype)  # float32, or bf16/fp16 under mixed precision
        gamma, beta = ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32")
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            # The kernel returns the unbiased batch variance; Keras keeps the biased one.
            count = ops.cast(ops.prod(ops.shape(x)[:-1]), "float32")
            variance = variance * (count - 1.0) / ops.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=ops.cast(self.moving_mean, "float32"),
                variance=ops.cast(self.moving_variance, "float32"), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        return y


def _global_fusion(x, filters: int, config: TrainConfig):
    """Iizuka et al.'s fusion: pool the bottleneck to one vector, mix it, append it to every
    position and fold it back to `filters` channels with a 1x1 convolution."""
    vector = layers.GlobalAveragePooling2D(dtype=config.precision, name="global_pool")(x)
    vector = layers.Dense(filters, activation="relu", dtype=config.precision, name="global_dense")(vector)
    x = BroadcastConcat(dtype=config.precision, name="global_fuse")([x, vector])
    return layers.Conv2D(filters, 1, activation="relu", dtype=config.precision, name="global_mix")(x)


def _conv_block(x, filters: int, config: TrainConfig, name: str):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not config.batch_norm,
                          dtype=config.precision, name=f"{name}_conv{i}")(x)
        if config.batch_norm:
            x = FusedBatchNormalization(dtype=config.precision, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", dtype=config.precision, name=f"{name}_relu{i}")(x)
    return x


def build_unet(config: TrainConfig, input_size: int | None = None) -> keras.Model:
    """(B, H, W, 1) normalised L -> (B, H, W, 2) normalised a/b in [-1, 1].

    `input_size` fixes H = W (for counting FLOPs); by default any size works.
    """
    config = dataclasses.replace(config, precision=precision.resolve(config.precision))
    inputs = keras.Input(shape=(input_size, input_size, 1), name="L")
    x, skips = inputs, []
    for level in range(config.depth):  # encoder: H -> H / 2**depth
        x = _conv_block(x, config.base_filters * 2**level, config, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, dtype=config.precision, name=f"pool{level}")(x)
    x = _conv_block(x, config.base_filters * 2**config.depth, config, "bottleneck")
    if config.global_context:
        x = _global_fusion(x, config.base_filters * 2**config.depth, config)
    if config.dropout:
        x = layers.Dropout(config.dropout, dtype=config.precision, name="bottleneck_dropout")(x)
    # Decoder with skip connections; an output stride stops it early (Zhang et al. predict at
    # 1/4 scale: chroma varies slowly, and the upsampler restores the photo's edges).
    coarsest = config.output_stride.bit_length() - 1
    for level in reversed(range(coarsest, config.depth)):
        filters = config.base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", dtype=config.precision,
                                   name=f"up{level}")(x)
        x = layers.Concatenate(dtype=config.precision, name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, filters, config, f"dec{level}")
    # float32 outputs keep tanh, the softmax and the loss exact under mixed precision.
    if config.head == "bins":
        outputs = layers.Conv2D(ab_bins.bin_count(), 1, dtype="float32", name="ab_logits")(x)
    else:
        outputs = layers.Conv2D(2, 1, activation="tanh", dtype="float32", name="ab")(x)
        if config.output_stride > 1:  # resized up here, so every loss sees the photo's resolution
            outputs = ResizeUp(config.output_stride, dtype="float32", name="ab_resized")(outputs)
    return keras.Model(inputs, outputs, name="colorize_unet")


def output_ab(output: np.ndarray, config: TrainConfig, calibration: dict | None = None) -> np.ndarray:
    """The model's raw output (N, h, w, channels) or (h, w, channels) -> normalised a/b at the
    input's size, before the gains: the regression head's a/b (resized inside the model), or
    the bins head's annealed mean at the calibrated temperature, resized up bilinearly from
    (h, w) = the input's size / output_stride if coarse (the mean comes first: logits do not
    interpolate)."""
    calibration = calibration or {}
    if config.head != "bins":
        return output
    ab = ab_bins.annealed_mean(output, calibration.get("temperature", config.temperature))
    stride = config.output_stride
    if stride == 1:
        return ab

    def resize(plane):  # half-pixel centres: each coarse pixel is the mean of its stride^2 block
        return cv2.resize(plane, (plane.shape[1] * stride, plane.shape[0] * stride), interpolation=cv2.INTER_LINEAR)

    return np.stack([resize(plane) for plane in ab]) if ab.ndim == 4 else resize(ab)


def decoder_at_temperature(config: TrainConfig) -> Callable[[np.ndarray, float], np.ndarray]:
    """(bins logits, T) -> a/b at the input's size: what the temperature is searched with."""
    return lambda logits, temperature: output_ab(logits, config, {"temperature": temperature})


def decode_ab(output: np.ndarray, config: TrainConfig, calibration: dict | None = None) -> np.ndarray:
    """The model's raw output for whole images (..., h, w, channels) -> normalised a/b at the
    input's size (output_ab) with the calibration's gains on a/b (calibration.py). The gains
    use each image's mean a/b: with padded inputs, crop output_ab's result and apply them."""
    return apply_gains(output_ab(output, config, calibration), calibration or {})


def count_flops(config: TrainConfig, size: int) -> int:
    """FLOPs (2 x multiply-accumulates) of one forward pass on a size x size image, convolutions only."""
    model = build_unet(config, input_size=size)
    flops = 0
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
        elif isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            # A transposed conv does its MACs per input pixel, a conv per output pixel.
            h, w = (layer.input if isinstance(layer, layers.Conv2DTranspose) else layer.output).shape[1:3]
            flops += 2 * h * w * kh * kw * c_in * layer.filters
    return int(flops)
