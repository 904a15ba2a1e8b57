"""Quality metrics on reconstructed RGB images (uint8), the figures the literature reports.

PSNR and SSIM follow scikit-image's conventions (SSIM: Gaussian window sigma 1.5,
data range 255, mean over channels), reimplemented with OpenCV filters for speed and
cross-checked against scikit-image in tests. Colourfulness is Hasler and Suesstrunk's.
One implementation, used by training, evaluation, tuning and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from colorize import lab

PSNR_CAP = 100.0  # dB for identical images, so that means stay finite
_K1, _K2, _SIGMA, _WIN = 0.01, 0.03, 1.5, 11


def psnr(truth: np.ndarray, pred: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images."""
    mse = np.mean((truth.astype(np.float64) - pred.astype(np.float64)) ** 2)
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, float(10 * np.log10(255.0**2 / mse)))


def ssim(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean structural similarity of two uint8 images (H, W[, C])."""
    x, y = truth.astype(np.float64), pred.astype(np.float64)

    def blur(img):
        return cv2.GaussianBlur(img, (_WIN, _WIN), _SIGMA, borderType=cv2.BORDER_REFLECT)

    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    c1, c2 = (_K1 * 255) ** 2, (_K2 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (_WIN - 1) // 2
    if min(s.shape[:2]) > 2 * pad:  # scikit-image ignores the border a window cannot cover
        s = s[pad:-pad, pad:-pad]
    return float(s.mean())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003) colourfulness of a uint8 RGB image: 0 for grey."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def mean_colourfulness(images: Iterable[np.ndarray]) -> float:
    """Mean colourfulness of uint8 RGB images (an array of them or a list); NaN for none,
    as `score` gives."""
    values = [colourfulness(image) for image in images]
    return float(np.mean(values)) if values else float("nan")


def score(truths: Iterable[np.ndarray], preds: Iterable[np.ndarray]) -> dict[str, float]:
    """Mean PSNR, SSIM and colourfulness of predictions against their truths (uint8 RGB)."""
    rows = [(psnr(t, p), ssim(t, p), colourfulness(p)) for t, p in zip(truths, preds, strict=True)]
    if not rows:
        return {"psnr": float("nan"), "ssim": float("nan"), "colourfulness": float("nan")}
    mean = np.mean(rows, axis=0)
    return {"psnr": float(mean[0]), "ssim": float(mean[1]), "colourfulness": float(mean[2])}


def grey_prediction(rgb: np.ndarray) -> np.ndarray:
    """The baseline every colorizer must beat: the photo's own L with a = b = 0, uint8."""
    return lab.to_uint8(lab.grey_rgb(rgb))


def grey_score(truths: list[np.ndarray]) -> dict[str, float]:
    """The grey prediction's PSNR, SSIM and colourfulness on `truths`."""
    return score(truths, [grey_prediction(t) for t in truths])


def compare_with_grey(truths: list[np.ndarray], preds: list[np.ndarray]) -> dict[str, Any]:
    """Model and grey-prediction scores side by side, plus the truth's colourfulness."""
    return {
        "model": score(truths, preds),
        "grey": grey_score(truths),
        "truth": {"colourfulness": mean_colourfulness(truths)},
        "images": len(truths),
    }
