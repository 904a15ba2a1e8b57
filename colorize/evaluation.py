"""Full-resolution evaluation: the model beside the grey prediction on the same photos."""

from __future__ import annotations

import logging

from colorize import metrics
from colorize.artifact import Artifact
from colorize.colorizer import colorize_batch
from colorize.data import Photo

log = logging.getLogger(__name__)


def evaluate_photos(artifact: Artifact, photos: list[Photo], batch_size: int = 4) -> dict:
    """PSNR, SSIM and colourfulness (model and grey prediction) at each photo's own size."""
    truths, preds = [], []
    for start in range(0, len(photos), batch_size):
        rgbs = [photo.load() for photo in photos[start : start + batch_size]]
        # Same-shaped photos share a forward pass; mixed shapes are padded by colorize_batch.
        preds += colorize_batch(artifact, rgbs)
        truths += rgbs
    result = metrics.compare_with_grey(truths, preds)
    result["beats_grey"] = {
        k: result["model"][k] > result["grey"][k] for k in ("psnr", "ssim")
    }
    return result
