"""Inference on its own: a trained artifact and photos in, the model's colour out.

Owns what a Serve replica, `colorize predict`, evaluation and the plots need and nothing
more: loading the artifact (artifact.py), the working scale (preprocess.py), the forward
pass, the edge-aware upsampling of the predicted a/b to the photo's own size and composing
it with the photo's full-resolution L, and the colour strength on top (`colorize_batch`:
any photo of any size in, a colour photo of the same size out; used by the CLI, the report
and the Serve endpoint). It imports nothing from training, tiling or tf.data (a test checks
`sys.modules`), so a replica loads only the model; training scores its validation crops
with the same `predict_ab`.
"""

from __future__ import annotations

import math
import weakref

import cv2
import numpy as np

from colorize import lab
from colorize.artifact import Artifact, load_artifact, read_metadata
from colorize.calibration import apply_gains
from colorize.decoding import output_ab
from colorize.errors import ColorizeError
from colorize.images import split_alpha
from colorize.preprocess import resize_short_side, working_side

__all__ = [
    "Artifact", "MAX_ASPECT", "MAX_STRENGTH", "UPSAMPLERS", "check_strength", "colorize_batch",
    "colorize_batch_strengths", "colorize_image", "compose", "load_artifact", "predict_ab",
    "predict_full_ab", "prepare", "read_metadata", "to_working_scale", "working_ab", "working_side",
]

MAX_ASPECT = 4  # the model's input never exceeds 4 x the working side on its long side
MAX_STRENGTH = 3.0  # colour strength: 0 = grey, 1 = the model's calibrated colour, 3 = triple
UPSAMPLERS = ("guided", "bilinear")  # how the working-scale a/b reach full size (see upsample_ab)
# The guided upsampler's window radius (working-scale pixels) and regulariser (normalised L
# squared: 1e-3 is an L standard deviation of ~3 units, below which a window counts as flat).
# Chosen on bsds500/test with the averaged recipe (docs/experiments.md, "edge-aware upsampling").
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-3


def predict_ab(model, l_norm: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Batched forward pass, normalised L (N, H, W, 1) -> the model's raw output."""
    forward = _forward(model)
    out = [np.asarray(forward(l_norm[i : i + batch_size])) for i in range(0, len(l_norm), batch_size)]
    return np.concatenate(out) if out else np.zeros(l_norm.shape[:-1] + (2,), np.float32)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward(model):
    """The model's inference call as one TensorFlow graph: an eager Keras call pays a fixed
    Python cost per batch whatever its size, several times a one-photo forward pass. With
    `reduce_retracing` TensorFlow generalises to any shape after a few traces, so photos
    of new sizes do not each pay a trace. Under a distribution strategy (Ray Train's
    workers) the plain call stays, as it works in any context."""
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return lambda batch: model(batch, training=False)
    if model not in _COMPILED:
        ref = weakref.ref(model)  # the cache must not keep a model alive (Tune makes many)
        _COMPILED[model] = tf.function(lambda batch: ref()(batch, training=False),  # type: ignore[misc]
                                       reduce_retracing=True)  # (ref() lives while the model does)
    return _COMPILED[model]


def prepare(artifact: Artifact, image: np.ndarray) -> dict:
    """One decoded image -> its planes: "l" full-size normalised L, "alpha" (or None) and
    "small", the model's normalised L input: L resized to the working scale by the rule
    training tiles follow (preprocess.py). Training resizes RGB and then converts, this
    converts and then resizes L, so that a colour photo and its grey version give the
    same input; the two agree to a fraction of an L unit (tests/test_inference.py)."""
    rgb, alpha = split_alpha(image)
    l_norm = lab.split_lab(rgb)[0][..., 0]  # colour inputs become grey here: only L is used
    return {"l": l_norm, "alpha": alpha, "small": to_working_scale(l_norm, artifact.config.image_size)}


def to_working_scale(image: np.ndarray, image_size: int) -> np.ndarray:
    """An image (or one plane of it) at the scale the model colours it: its short side the
    working side of `image_size` crops, its long side at most MAX_ASPECT times that."""
    side = working_side(image_size)
    return resize_short_side(image, side, max_long=MAX_ASPECT * side)


def predict_full_ab(
    artifact: Artifact, images: list[np.ndarray], upsample: str = "guided"
) -> list[tuple[dict, np.ndarray]]:
    """Per image: its prepared planes (see `prepare`) and the predicted normalised a/b
    upsampled to full size (H, W, 2) by `upsample` (one of UPSAMPLERS)."""
    if upsample not in UPSAMPLERS:
        raise ValueError(f"upsample must be one of {UPSAMPLERS}, got {upsample!r}")
    prepared = [prepare(artifact, image) for image in images]
    small_ab = working_ab(artifact, [p["small"] for p in prepared])
    return [(p, upsample_ab(p, ab, upsample)) for p, ab in zip(prepared, small_ab, strict=True)]


def working_ab(artifact: Artifact, smalls: list[np.ndarray]) -> list[np.ndarray]:
    """Per image's normalised L at the working scale (H, W; `prepare`'s "small"): the
    calibrated a/b at that scale (H, W, 2). One forward pass per working shape: images of
    the same shape share it, and none is padded to another's (padding would change the
    colours near its borders), so a photo gets the same colours in any batch as alone."""
    multiple = 2**artifact.config.depth
    shapes = [(_round_up(s.shape[0], multiple), _round_up(s.shape[1], multiple)) for s in smalls]
    results: list = [None] * len(smalls)
    for shape in dict.fromkeys(shapes):  # first-seen order
        members = [i for i, s in enumerate(shapes) if s == shape]
        batch = np.stack([_pad(smalls[i], *shape) for i in members])[..., None]
        output = predict_ab(artifact.model, batch)
        for row, i in enumerate(members):
            small_h, small_w = smalls[i].shape
            ab = output_ab(output[row], artifact.config, artifact.calibration)[:small_h, :small_w]
            results[i] = apply_gains(ab, artifact.calibration)
    return results


def check_strength(strength: float) -> float:
    """`strength` as a float in [0, MAX_STRENGTH]; ColorizeError (HTTP 422) otherwise."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= MAX_STRENGTH:  # also refuses NaN
        raise ColorizeError(
            f"strength must be a number from 0 (grey) to {MAX_STRENGTH:g}, 1 being the model's "
            f"calibrated colour; got {strength!r}",
            status=422,
        )
    return value


def colorize_image(artifact: Artifact, image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """One decoded image (grey, RGB, RGBA; uint8 or uint16) -> RGB or RGBA uint8, same size."""
    return colorize_batch(artifact, [image], strength)[0]


def colorize_batch(
    artifact: Artifact, images: list[np.ndarray], strength: float = 1.0, upsample: str = "guided"
) -> list[np.ndarray]:
    """Colorize several images, one forward pass per working shape.

    `strength` scales the predicted chroma (a/b) around grey: 0 gives the grey prediction
    exactly, 1 the model's own (calibrated) colour, larger values more vivid colour.
    `upsample` is one of UPSAMPLERS ("bilinear" only to compare against)."""
    strength = check_strength(strength)
    return [compose(p, ab * strength) for p, ab in predict_full_ab(artifact, images, upsample)]


def colorize_batch_strengths(
    artifact: Artifact, images: list[np.ndarray], strengths: list[float]
) -> list[np.ndarray]:
    """`colorize_batch` with one strength per image, still one forward pass (a served
    batch mixes requests that asked for different strengths)."""
    strengths = [check_strength(s) for s in strengths]
    predictions = predict_full_ab(artifact, images)
    return [compose(p, ab * s) for (p, ab), s in zip(predictions, strengths, strict=True)]


def compose(prepared: dict, ab: np.ndarray) -> np.ndarray:
    """The full-size L of `prepared` joined with normalised a/b -> RGB (or RGBA) uint8."""
    rgb = lab.to_uint8(lab.join_lab(prepared["l"][..., None], ab))
    if prepared["alpha"] is not None:
        return np.dstack([rgb, prepared["alpha"]])
    return rgb


def upsample_ab(prepared: dict, ab: np.ndarray, method: str = "guided") -> np.ndarray:
    """The working-scale a/b (h, w, 2) of `prepared` -> full size (H, W, 2).

    "bilinear" interpolates each plane on its own, so colour bleeds across every edge
    the photo has and fills flat areas with the model's speckle. "guided" is He and Sun's
    fast guided filter used as an upsampler: in each (2r+1)^2 window of the working scale
    it fits a/b as a linear function of the working-scale L, smooths and upsamples those
    coefficients, and applies them to the full-resolution L. Colour edges then follow the
    photo's own luminance edges, and where L is flat the window's mean colour is used
    (its scores against "bilinear": docs/experiments.md, "edge-aware upsampling")."""
    h, w = prepared["l"].shape
    if method == "bilinear" or min(ab.shape[:2]) < 2:
        out = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)
        return out.reshape(h, w, 2)  # cv2 drops a trailing axis of 1 for 1-pixel images
    guide = prepared["small"].astype(np.float32)
    ab = ab.astype(np.float32)
    mean_l = _box(guide)
    var_l = _box(guide * guide) - mean_l * mean_l
    mean_ab = _box(ab)
    cov = _box(ab * guide[..., None]) - mean_ab * mean_l[..., None]
    slope = cov / (var_l + GUIDE_EPS)[..., None]
    offset = mean_ab - slope * mean_l[..., None]
    # In place at full size: a 12-megapixel photo is where this step's time goes.
    out = np.asarray(cv2.resize(_box(slope), (w, h), interpolation=cv2.INTER_LINEAR), np.float32).reshape(h, w, 2)
    out *= prepared["l"][..., None]
    out += cv2.resize(_box(offset), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, 2)
    return out


def _box(plane: np.ndarray) -> np.ndarray:
    """Mean over each (2 GUIDE_RADIUS + 1)^2 window, mirrored at the borders; keeps (h, w[, c])."""
    side = 2 * GUIDE_RADIUS + 1
    out = cv2.boxFilter(plane, -1, (side, side), borderType=cv2.BORDER_REFLECT)
    return out.reshape(plane.shape)


def _pad(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad to (height, width); edge-pad where the plane is too small to reflect."""
    pad_h, pad_w = height - plane.shape[0], width - plane.shape[1]
    mode = "reflect" if pad_h < plane.shape[0] and pad_w < plane.shape[1] else "edge"
    return np.pad(plane, ((0, pad_h), (0, pad_w)), mode=mode)  # type: ignore[call-overload]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
