"""Figures (matplotlib, Agg): training curves and the per-image results grid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from colorize import lab  # noqa: E402
from colorize.inference import Artifact, predict_full_ab  # noqa: E402

# a runs green (-) to magenta (+), b blue (-) to yellow (+); white is neutral (0).
A_CMAP = LinearSegmentedColormap.from_list("lab_a", ["#008a4b", "#ffffff", "#d4007a"])
B_CMAP = LinearSegmentedColormap.from_list("lab_b", ["#1f4fd8", "#ffffff", "#e8b800"])

CURVES = {
    "loss": (("loss", "train"), ("val_loss", "validation")),
    "ssim": (("val_ssim", "validation SSIM (RGB)"),),
    "psnr": (("val_psnr", "validation PSNR (RGB, dB)"),),
    "colourfulness": (("val_colourfulness", "validation colourfulness"),),
}


def plot_history(history: dict, out_dir: str | Path, grey: dict | None = None) -> list[Path]:
    """loss.png, ssim.png, psnr.png, colourfulness.png; `grey` draws the grey prediction's
    level for reference."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, series in CURVES.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in series:
            values = history.get(key, [])
            ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        if grey and name in grey:
            ax.axhline(grey[name], color="grey", linestyle="--", label="grey prediction")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name.upper() if name in ("ssim", "psnr") else name)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_results(artifact: Artifact, photos: list[np.ndarray], path: str | Path) -> Path:
    """One row per photo: original, L input, predicted a, predicted b, reconstructed RGB."""
    rows = predict_full_ab(artifact, photos)
    fig, axes = plt.subplots(len(rows), 5, figsize=(15, 3 * len(rows)), squeeze=False)
    titles = ("original", "L input", "predicted a", "predicted b", "colorized")
    for row, (photo, (prepared, ab)) in enumerate(zip(photos, rows, strict=True)):
        l_norm = prepared["l"]
        colour = lab.to_uint8(lab.join_lab(l_norm[..., None], ab))
        panels = (photo, l_norm, lab.denormalize_ab(ab[..., 0]), lab.denormalize_ab(ab[..., 1]), colour)
        for col, (ax, panel) in enumerate(zip(axes[row], panels, strict=True)):
            if col == 1:
                ax.imshow(lab.denormalize_l(panel), cmap="gray", vmin=0, vmax=100)
            elif col in (2, 3):
                cmap = A_CMAP if col == 2 else B_CMAP
                im = ax.imshow(panel, cmap=cmap, vmin=-lab.AB_SCALE / 2, vmax=lab.AB_SCALE / 2)
                fig.colorbar(im, ax=ax, fraction=0.046)
            else:
                ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
