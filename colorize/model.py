"""The U-Net-like autoencoder: L channel in, a/b out (regression head) or a/b bin logits
(bins head, see ab_bins.py); decoding.py turns either into a/b.

Fully convolutional: any input whose sides are multiples of 2**depth works, so one
trained model colorizes photos of any size (see inference.py). With `global_context` a
whole-image feature vector is fused into every bottleneck position (Iizuka et al. 2016),
so the scene, not only the neighbourhood, decides the palette.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers

from colorize import ab_bins, efficientnet_lite, precision
from colorize.config import TrainConfig
from colorize.layers import BroadcastConcat, FusedBatchNormalization, ResizeUp


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


def _plain_encoder(inputs, config: TrainConfig):
    """The seed's encoder, trained from scratch: two convolutions a level, then max pooling;
    -> (the bottleneck, the skip of each level)."""
    x, skips = inputs, []
    for level in range(config.depth):  # H -> H / 2**depth
        x = _conv_block(x, config.base_filters * 2**level, config, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, dtype=config.precision, name=f"pool{level}")(x)
    return _conv_block(x, config.base_filters * 2**config.depth, config, "bottleneck"), skips


def _pretrained_encoder(inputs, config: TrainConfig):
    """The ImageNet-pretrained EfficientNet-Lite on the grey photo as RGB: its features at
    strides 2 .. 2**(depth - 1) are the skips, its stride-2**depth feature the bottleneck.
    The full-resolution skip, which it has no feature for, is a plain level on L itself
    (left out where an output stride keeps the decoder from reaching it)."""
    rgb = efficientnet_lite.GreyToEncoderInput(dtype=config.precision, name="enc_input")(inputs)
    taps = efficientnet_lite.features(rgb, levels=config.depth, dtype=config.precision, variant=config.encoder)
    full = _conv_block(inputs, config.base_filters, config, "down0") if config.output_stride == 1 else None
    bottleneck = taps[-1]
    if config.encoder_head:  # what the network knows of each region's class, beside its features
        head = efficientnet_lite.head_features(bottleneck, config.precision)
        bottleneck = layers.Concatenate(dtype=config.precision, name="head_concat")([bottleneck, head])
    return bottleneck, [full, *taps[:-1]]


def build_unet(config: TrainConfig, input_size: int | None = None) -> keras.Model:
    """(B, H, W, 1) normalised L -> (B, H, W, 2) normalised a/b in [-1, 1].

    `input_size` fixes H = W (for counting FLOPs); by default any size works.
    """
    config = dataclasses.replace(config, precision=precision.resolve(config.precision))
    inputs = keras.Input(shape=(input_size, input_size, 1), name="L")
    if config.encoder == "none":
        x, skips = _plain_encoder(inputs, config)
    else:
        x, skips = _pretrained_encoder(inputs, config)
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
