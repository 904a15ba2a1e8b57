"""Lab colour space: conversion and the one place that holds every normalisation constant.

The model sees L scaled to [-0.5, 0.5] and predicts a/b scaled to the tanh range [-1, 1].
All conversions run in float32 through OpenCV (L in [0, 100], a/b roughly in [-110, 110]).
"""

from __future__ import annotations

import cv2
import numpy as np

L_CENTER = 50.0  # L in [0, 100] -> centred on 0
L_SCALE = 100.0  # ... and scaled to [-0.5, 0.5]
AB_SCALE = 110.0  # a/b of sRGB lie within [-110, 110]: /110 maps them into tanh's range

NORMALISATION = {"l_center": L_CENTER, "l_scale": L_SCALE, "ab_scale": AB_SCALE}


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) RGB, uint8 or float in [0, 1] -> float32 Lab, L in [0, 100]."""
    rgb = to_float_rgb(rgb)
    if rgb.ndim == 3:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    return np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2Lab) for im in rgb])


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float32 Lab (H, W, 3) or (N, H, W, 3) -> float32 RGB clipped to [0, 1]."""
    lab = np.ascontiguousarray(lab, dtype=np.float32)
    if lab.ndim == 3:
        rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    else:
        rgb = np.stack([cv2.cvtColor(im, cv2.COLOR_Lab2RGB) for im in lab])
    return np.clip(rgb, 0.0, 1.0)


def to_float_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float RGB -> contiguous float32 in [0, 1]."""
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / 255.0
    if rgb.dtype == np.uint16:
        return rgb.astype(np.float32) / 65535.0
    return np.ascontiguousarray(rgb, dtype=np.float32)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] -> uint8, rounded."""
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def normalize_l(l_channel: np.ndarray) -> np.ndarray:
    return (l_channel - L_CENTER) / L_SCALE


def denormalize_l(l_norm: np.ndarray) -> np.ndarray:
    return l_norm * L_SCALE + L_CENTER


def normalize_ab(ab: np.ndarray) -> np.ndarray:
    return ab / AB_SCALE


def denormalize_ab(ab_norm: np.ndarray) -> np.ndarray:
    return ab_norm * AB_SCALE


def split_lab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB -> (normalised L with a channel axis, normalised a/b): the model's input and target."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., :1]), normalize_ab(lab[..., 1:])


def join_lab(l_norm: np.ndarray, ab_norm: np.ndarray) -> np.ndarray:
    """Normalised L (..., 1) and a/b (..., 2) -> float32 RGB in [0, 1]."""
    lab = np.concatenate([denormalize_l(l_norm), denormalize_ab(ab_norm)], axis=-1)
    return lab_to_rgb(lab.astype(np.float32))


def grey_rgb(rgb: np.ndarray) -> np.ndarray:
    """The "grey" prediction (a = b = 0): the photo's own lightness with no colour, float RGB."""
    l_norm, ab = split_lab(rgb)
    return join_lab(l_norm, np.zeros_like(ab))
