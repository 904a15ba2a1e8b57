"""Every binning of the a/b plane, in one place: the classification head's colour bins
(Zhang et al. 2016) and the square grid the regression head's rebalancing counts on.

The a/b plane is cut into squares of BIN_SIZE Lab units; the bins the sRGB gamut reaches
(261 of them with these constants: `bin_count()`) are the classes. Targets are soft: each pixel's true a/b spreads over
its NEIGHBOURS nearest bin centres with Gaussian weights (sigma SOFT_SIGMA). Decoding is the
annealed mean: softmax(logits / T) weighted over the centres; T -> 0 is the mode (vivid,
risky), T = 1 the mean (safe, dull). Zhang et al. use T = 0.38.

Centres here are in the model's normalised a/b units (lab.AB_SCALE), like the regression head.

The regression head's rebalancing (losses.rebalance_weights) counts colours on a plain
GRID_SIDE x GRID_SIDE grid over the normalised a/b square instead (`grid_index`): its
weights were fitted on that grid, and rebalanced regression models train as before.
"""

from __future__ import annotations

import functools

import numpy as np

from colorize import lab

BIN_SIZE = 10.0  # Lab units between bin centres (Zhang et al.)
SOFT_SIGMA = 5.0  # Lab units: Gaussian width of the soft encoding
NEIGHBOURS = 5  # nearest bins each pixel's target spreads over
GAMUT_STEPS = 64  # sRGB cube sampled 64^3 to find the reachable a/b bins
GRID_STEP = 0.1  # the rebalancing grid's cell on normalised a/b (11 Lab units)
GRID_EDGE = 1.1  # the grid covers [-1.1, 1.1) on each axis
GRID_SIDE = int(round(2 * GRID_EDGE / GRID_STEP))  # 22 cells per axis


@functools.lru_cache(maxsize=1)
def bin_centres() -> np.ndarray:
    """(Q, 2) float32 normalised a/b of the in-gamut bins, computed from the sRGB cube."""
    axis = np.linspace(0.0, 1.0, GAMUT_STEPS, dtype=np.float32)
    cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 1, 3)
    ab = lab.rgb_to_lab(cube)[:, 0, 1:]
    cells = np.unique(np.round(ab / BIN_SIZE).astype(np.int64), axis=0)
    return lab.normalize_ab(cells.astype(np.float32) * BIN_SIZE)


def bin_count() -> int:
    return len(bin_centres())


def nearest_bin(ab_norm: np.ndarray) -> np.ndarray:
    """Index of the nearest bin centre of each normalised a/b (..., 2) (numpy)."""
    centres = bin_centres()
    flat = ab_norm.reshape(-1, 2)
    distances = ((flat[:, None, :] - centres[None]) ** 2).sum(-1)
    return distances.argmin(-1).reshape(ab_norm.shape[:-1])


def soft_encode(ab_norm):
    """(..., 2) normalised a/b -> (..., Q) soft targets summing to 1 (TensorFlow)."""
    import tensorflow as tf

    centres = tf.constant(bin_centres() * lab.AB_SCALE)  # (Q, 2) in Lab units
    ab = tf.cast(ab_norm, tf.float32) * lab.AB_SCALE
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, as one matmul instead of a (..., Q, 2) difference
    dist2 = (tf.reduce_sum(tf.square(ab), -1, keepdims=True) - 2.0 * tf.tensordot(ab, centres, axes=[[-1], [1]])
             + tf.reduce_sum(tf.square(centres), -1))
    # Clamp rounding below zero, and break exact ties (a pixel halfway between bins) by bin
    # index so that exactly NEIGHBOURS bins pass the threshold below.
    dist2 = tf.maximum(dist2, 0.0) + tf.range(len(bin_centres()), dtype=tf.float32) * 1e-4
    weights = tf.exp(-dist2 / (2.0 * SOFT_SIGMA**2))
    kth = tf.math.top_k(-dist2, k=NEIGHBOURS).values[..., -1:]  # -(5th smallest distance)
    weights = tf.where(-dist2 >= kth, weights, tf.zeros_like(weights))
    return weights / tf.reduce_sum(weights, -1, keepdims=True)


def bin_prior(ab_train: np.ndarray) -> np.ndarray:
    """(Q,) frequency of each bin among the training pixels, smoothed over the a/b plane."""
    counts = np.bincount(nearest_bin(_subsample(ab_train)).ravel(), minlength=bin_count())
    p = _smooth_over_bins(counts.astype(np.float64))
    return p / p.sum()


def class_weights(prior: np.ndarray, strength: float) -> np.ndarray:
    """Per-bin rebalancing weights ((1 - lambda) p + lambda / Q)^-1 with lambda = 1 - strength
    (strength 0.5 is Zhang et al.'s), p the bin prior; scaled so the expected weight over
    the training pixels is 1 (the loss keeps plain cross-entropy's scale)."""
    weights = 1.0 / (strength * prior + (1.0 - strength) / len(prior))
    weights /= np.sum(prior * weights)
    return weights.astype(np.float32)


def _subsample(ab: np.ndarray, limit: int = 200_000) -> np.ndarray:
    """A strided subset of pixels: enough for frequencies, cheap to bin."""
    flat = ab.reshape(-1, 2)
    return flat[:: max(1, len(flat) // limit)]


def _smooth_over_bins(counts: np.ndarray) -> np.ndarray:
    """Gaussian smoothing of bin counts over the a/b plane (sigma = SOFT_SIGMA Lab units)."""
    centres = bin_centres() * lab.AB_SCALE
    dist2 = ((centres[:, None] - centres[None]) ** 2).sum(-1)
    kernel = np.exp(-dist2 / (2 * SOFT_SIGMA**2))
    return kernel @ counts


def annealed_mean(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(..., Q) logits -> (..., 2) normalised a/b: the mean of softmax(logits / T) (numpy)."""
    scaled = logits.astype(np.float32) / max(float(temperature), 1e-6)
    scaled -= scaled.max(-1, keepdims=True)
    probs = np.exp(scaled)
    probs /= probs.sum(-1, keepdims=True)
    return probs @ bin_centres()


def grid_index(ab):
    """Flattened rebalancing-grid cell of normalised a/b (..., 2); numpy or TF tensors."""
    if isinstance(ab, np.ndarray):
        idx = np.clip(np.floor((ab + GRID_EDGE) / GRID_STEP), 0, GRID_SIDE - 1).astype(np.int64)
    else:
        import tensorflow as tf

        idx = tf.cast(tf.clip_by_value(tf.floor((ab + GRID_EDGE) / GRID_STEP), 0, GRID_SIDE - 1), tf.int32)
    return idx[..., 0] * GRID_SIDE + idx[..., 1]
