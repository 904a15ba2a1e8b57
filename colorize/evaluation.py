"""Full-resolution evaluation: the model beside the grey prediction on the same photos."""

from __future__ import annotations

import logging

from colorize import metrics
from colorize.data import Photo
from colorize.inference import Artifact, check_strength, colorize_batch, compose, predict_full_ab

log = logging.getLogger(__name__)


def evaluate_photos(
    artifact: Artifact, photos: list[Photo], batch_size: int = 4, strength: float = 1.0,
    upsample: str = "guided",
) -> dict:
    """PSNR, SSIM and colourfulness (model and grey prediction) at each photo's own size;
    `upsample` as in inference.predict_full_ab."""
    truths, preds = [], []
    for start in range(0, len(photos), batch_size):
        rgbs = [photo.load() for photo in photos[start : start + batch_size]]
        preds += colorize_batch(artifact, rgbs, strength, upsample)
        truths += rgbs
    result = metrics.compare_with_grey(truths, preds)
    result["beats_grey"] = {
        k: result["model"][k] > result["grey"][k] for k in ("psnr", "ssim")
    }
    return result


def strength_sweep(
    artifact: Artifact, photos: list[Photo], strengths: list[float], batch_size: int = 4,
    upsample: str = "guided",
) -> dict[float, dict[str, float]]:
    """The model's scores at each colour strength, from one forward pass per photo batch:
    the trade-off between accuracy (PSNR, SSIM) and colourfulness along the strength axis."""
    strengths = [check_strength(s) for s in strengths]
    rows: dict[float, list] = {s: [] for s in strengths}
    for start in range(0, len(photos), batch_size):
        rgbs = [photo.load() for photo in photos[start : start + batch_size]]
        for truth, (prepared, ab) in zip(rgbs, predict_full_ab(artifact, rgbs, upsample), strict=True):
            for s in strengths:
                rows[s].append((truth, compose(prepared, ab * s)))
    return {s: metrics.score([t for t, _ in pairs], [p for _, p in pairs]) for s, pairs in rows.items()}
