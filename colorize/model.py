"""The U-Net-like autoencoder: L channel in, a/b channels out through tanh.

Fully convolutional: any input whose sides are multiples of 2**depth works, so one
trained model colorizes photos of any size (see colorizer.py).
"""

from __future__ import annotations

import keras
from keras import layers

from colorize.config import TrainConfig


def _conv_block(x, filters: int, config: TrainConfig, name: str):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not config.batch_norm,
                          dtype=config.precision, name=f"{name}_conv{i}")(x)
        if config.batch_norm:
            x = layers.BatchNormalization(dtype=config.precision, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", dtype=config.precision, name=f"{name}_relu{i}")(x)
    return x


def build_unet(config: TrainConfig, input_size: int | None = None) -> keras.Model:
    """(B, H, W, 1) normalised L -> (B, H, W, 2) normalised a/b in [-1, 1].

    `input_size` fixes H = W (for counting FLOPs); by default any size works.
    """
    inputs = keras.Input(shape=(input_size, input_size, 1), name="L")
    x, skips = inputs, []
    for level in range(config.depth):  # encoder: H -> H / 2**depth
        x = _conv_block(x, config.base_filters * 2**level, config, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, dtype=config.precision, name=f"pool{level}")(x)
    x = _conv_block(x, config.base_filters * 2**config.depth, config, "bottleneck")
    if config.dropout:
        x = layers.Dropout(config.dropout, dtype=config.precision, name="bottleneck_dropout")(x)
    for level in reversed(range(config.depth)):  # decoder with skip connections
        filters = config.base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", dtype=config.precision,
                                   name=f"up{level}")(x)
        x = layers.Concatenate(dtype=config.precision, name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, filters, config, f"dec{level}")
    # float32 output keeps tanh and the loss exact under mixed precision.
    outputs = layers.Conv2D(2, 1, activation="tanh", dtype="float32", name="ab")(x)
    return keras.Model(inputs, outputs, name="colorize_unet")


def count_flops(config: TrainConfig, size: int) -> int:
    """FLOPs (2 x multiply-accumulates) of one forward pass on a size x size image, convolutions only."""
    model = build_unet(config, input_size=size)
    flops = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            # A transposed conv does its MACs per input pixel, a conv per output pixel.
            h, w = (layer.input if isinstance(layer, layers.Conv2DTranspose) else layer.output).shape[1:3]
            flops += 2 * h * w * kh * kw * c_in * layer.filters
    return int(flops)
