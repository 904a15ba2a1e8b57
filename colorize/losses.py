"""Training losses on normalised a/b, selected by name: mse, ssim (1 - SSIM), mse+ssim, rgb
(squared error of the photo rebuilt in sRGB, the pixels PSNR and SSIM are scored on), psnr
(how far each rebuilt crop's PSNR falls short of 40 dB: the mean per-photo PSNR); and
for the bins head, cross-entropy against soft-encoded a/b bins (Zhang et al. 2016).

The target of every loss is the dataset's (a/b, L) stack (`data.make_dataset`): a/b is what
the model predicts; L is there so that "rgb" can rebuild the photo. A target of a/b alone
serves every loss but "rgb".

Optional class rebalancing (Zhang et al. 2016, sec. 2.2): each pixel's squared error is
weighted by the inverse of how common its true colour is in the training set, so rare
saturated colours are not averaged away into grey-brown.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from colorize import ab_bins, lab
from colorize.config import TrainConfig

PSNR_CEILING_DB = 40.0  # the "psnr" loss: 0 for a perfect crop, its PSNR counted up to here
PSNR_CEILING_MSE = 10.0 ** (-PSNR_CEILING_DB / 10.0)


def split_target(y_true):
    """(..., 3) target -> its a/b (..., 2) and L (..., 1); L is None for a bare a/b target."""
    return y_true[..., :2], (y_true[..., 2:] if y_true.shape[-1] == 3 else None)


def join_target(ab_norm: np.ndarray, l_norm: np.ndarray) -> np.ndarray:
    """split_target's inverse on arrays: the (a/b, L) target every loss takes (the training
    pipeline, `data.make_dataset`, builds the same in its graph): L lets a loss rebuild RGB."""
    return np.concatenate([ab_norm, l_norm], axis=-1).astype(np.float32)


# OpenCV's Lab <-> sRGB for float images (D65 white), so the loss sees the RGB the metrics see.
_WHITE_X, _WHITE_Z = 0.950456, 1.088754
_XYZ_TO_LINEAR_RGB = np.array(
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]],
    np.float32,
)


def srgb_from_lab(l_norm, ab_norm):
    """Normalised L (..., 1) and a/b (..., 2) tensors -> sRGB in [0, 1] (..., 3), differentiable:
    the TensorFlow twin of `lab.join_lab`."""
    l_norm, ab_norm = tf.cast(l_norm, tf.float32), tf.cast(ab_norm, tf.float32)
    big_l = lab.denormalize_l(l_norm)
    ab = lab.denormalize_ab(ab_norm)
    fy = (big_l + 16.0) / 116.0
    f = tf.concat([fy + ab[..., :1] / 500.0, fy, fy - ab[..., 1:] / 200.0], axis=-1)
    # the inverse of Lab's cube root, linear below 6/29 (Y from L directly, as OpenCV does)
    xyz = tf.where(f > 6.0 / 29.0, f**3, (f - 16.0 / 116.0) * 3.0 * (6.0 / 29.0) ** 2)
    xyz = xyz * tf.constant([_WHITE_X, 1.0, _WHITE_Z])
    linear = tf.clip_by_value(tf.linalg.matvec(tf.constant(_XYZ_TO_LINEAR_RGB), xyz), 0.0, 1.0)
    # sRGB gamma; the power's argument is kept off 0, where its gradient is infinite
    curved = 1.055 * tf.pow(tf.maximum(linear, 0.0031308), 1.0 / 2.4) - 0.055
    return tf.where(linear > 0.0031308, curved, 12.92 * linear)


def rebalance_weights(ab_train: np.ndarray, strength: float) -> np.ndarray:
    """Per-cell weights (s p + (1 - s) / Q)^-1 on ab_bins' rebalancing grid, p the smoothed
    colour frequencies: Zhang et al.'s ((1 - lambda) p + lambda / Q)^-1 with lambda = 1 - s,
    so s = 0 weighs every colour alike, 0.5 is their setting and s -> 1 is pure inverse frequency. Scaled so the mean
    weight over the training pixels is 1: the loss keeps plain MSE's scale."""
    import cv2

    side = ab_bins.GRID_SIDE
    counts = np.bincount(ab_bins.grid_index(ab_train).ravel(), minlength=side * side).astype(np.float64)
    p = np.asarray(cv2.GaussianBlur(counts.reshape(side, side), (0, 0), 0.5), np.float64).ravel()  # sigma ~ 5 Lab units
    p /= p.sum()
    weights = 1.0 / (strength * p + (1.0 - strength) / p.size)
    weights /= np.sum(counts * weights) / counts.sum()
    return weights.astype(np.float32)


def make_loss(config: TrainConfig, weights: np.ndarray | None = None):
    """The loss function of `config.loss` (or the bins head's cross-entropy); `weights`
    (rebalance_weights, or ab_bins.class_weights for bins) weight each pixel by its colour."""
    if config.head == "bins":
        return make_bins_loss(weights, config.output_stride)
    table = None if weights is None else tf.constant(weights)
    filter_size = min(11, config.image_size)

    def mse(y_true, y_pred):
        ab_true, _ = split_target(y_true)
        squared = tf.square(ab_true - y_pred)
        if table is not None:
            squared = squared * tf.gather(table, ab_bins.grid_index(ab_true))[..., None]
        return tf.reduce_mean(squared, axis=[1, 2, 3])

    def dssim(y_true, y_pred):
        # SSIM of the a/b planes, shifted from [-1, 1] to [0, 2] so the dynamic range is 2.
        ab_true, _ = split_target(y_true)
        return 1.0 - tf.image.ssim(ab_true + 1.0, y_pred + 1.0, max_val=2.0, filter_size=filter_size)

    def mse_ssim(y_true, y_pred):
        return mse(y_true, y_pred) + config.ssim_weight * dssim(y_true, y_pred)

    def rgb(y_true, y_pred):
        # An a/b error costs what it costs in the photo: little where L is near black or
        # white or the colour leaves the gamut (clipped), most in bright saturated areas.
        ab_true, l_norm = split_target(y_true)
        if l_norm is None:
            raise ValueError('the "rgb" loss needs the (a/b, L) target of data.make_dataset')
        error = srgb_from_lab(l_norm, y_pred) - srgb_from_lab(l_norm, ab_true)
        return tf.reduce_mean(tf.square(error), axis=[1, 2, 3])

    def psnr(y_true, y_pred):
        # dB each crop's rebuilt photo falls short of PSNR_CEILING_DB: the metric reports the
        # mean of per-photo PSNRs, so an error weighs by 1/(the crop's MSE), not equally.
        return 10.0 * _log10((rgb(y_true, y_pred) + PSNR_CEILING_MSE) / PSNR_CEILING_MSE)

    return {"mse": mse, "ssim": dssim, "mse+ssim": mse_ssim, "rgb": rgb, "psnr": psnr}[config.loss]


def _log10(x):
    return tf.math.log(x) / np.log(10.0).astype(np.float32)


def make_bins_loss(weights: np.ndarray | None = None, stride: int = 1):
    """Cross-entropy of the bin logits against soft-encoded true a/b, optionally weighted
    per pixel by the rarity of its nearest bin (ab_bins.class_weights). With `stride` > 1
    the logits are coarse (TrainConfig.output_stride): each is scored against the mean a/b of
    its stride x stride block, the colour its bilinear upsampling is centred on."""
    table = None if weights is None else tf.constant(weights)

    def bins_cross_entropy(y_true, logits):
        ab = split_target(y_true)[0]
        if stride > 1:
            ab = tf.nn.avg_pool2d(tf.cast(ab, tf.float32), stride, stride, "VALID")
        target = ab_bins.soft_encode(ab)
        per_pixel = -tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1)
        if table is not None:
            per_pixel = per_pixel * tf.gather(table, tf.argmax(target, axis=-1))
        return tf.reduce_mean(per_pixel, axis=[1, 2])

    return bins_cross_entropy
