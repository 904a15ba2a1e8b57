"""The project's own Keras layers, registered for saving: what model.py and the pretrained
encoder (efficientnet_lite.py) build from, and what a saved model.keras names."""

from __future__ import annotations

import keras
from keras import layers, ops


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
    bf16 activation to float32), so a training step is faster (bench/README.md, *Model
    throughput*). In inference TensorFlow folds it into the convolution before it. Other backends, masks and renorm take Keras's own path."""

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
