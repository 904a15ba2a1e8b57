"""A side-by-side figure of test photos: original, grey prediction, and each model's colour.

    python bench/side_by_side.py runs/bench-quality/mse/model runs/final/model \
        --labels "mse (seed)" "new default" --out bench/side_by_side.jpg

Photos come from ../shared/data/bsds500/test (nothing trains on them), evenly spaced
through the folder so the choice is not cherry-picked; the output is one JPEG under 1 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import require_shared_data  # noqa: E402
from colorize import data, metrics  # noqa: E402
from colorize.artifact import Artifact, load_artifact  # noqa: E402
from colorize.inference import (
    UPSAMPLERS,  # noqa: E402
    colorize_batch,  # noqa: E402
)

CELL_WIDTH = 240  # px per panel
LABEL_HEIGHT = 22


def panel(rgb: np.ndarray, text: str) -> np.ndarray:
    """The image resized to CELL_WIDTH wide (short side kept in proportion) with a caption."""
    h, w = rgb.shape[:2]
    size = (CELL_WIDTH, round(h * CELL_WIDTH / w)) if w >= h else (round(w * 160 / h), 160)
    image = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    canvas = np.full((160 + LABEL_HEIGHT, CELL_WIDTH, 3), 255, np.uint8)
    top, left = (160 - image.shape[0]) // 2, (CELL_WIDTH - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    cv2.putText(canvas, text, (4, 160 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="model folders, one column each")
    parser.add_argument("--labels", nargs="+", help="column titles (default: folder names)")
    parser.add_argument("--strengths", nargs="+", type=float,
                        help="colour strength per model (default: 1, each model's own calibration)")
    parser.add_argument("--calibrations", nargs="+", metavar="JSON",
                        help="colour calibration per model, e.g. a budget's from bench/quality.py's "
                        "results.json ('-': the model's own)")
    parser.add_argument("--upsample", nargs="+", choices=UPSAMPLERS,
                        help="how each model's a/b reach full size (default: guided for every model)")
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/side_by_side.jpg"))
    args = parser.parse_args()
    labels = args.labels or [m.parent.name for m in args.models]
    strengths = args.strengths or [1.0] * len(args.models)
    upsamplers = args.upsample or ["guided"] * len(args.models)
    calibrations = [None if c == "-" else json.loads(c) for c in args.calibrations or ["-"] * len(args.models)]
    if not len(labels) == len(strengths) == len(upsamplers) == len(calibrations) == len(args.models):
        raise SystemExit("give one --labels (and --strengths, --calibrations, --upsample) entry per model")

    photos = data.folder_photos(require_shared_data() / "bsds500" / "test")
    chosen = [photos[i] for i in np.linspace(0, len(photos) - 1, args.photos).round().astype(int)]
    originals = [photo.load() for photo in chosen]
    columns = [[panel(o, "original") for o in originals],
               [panel(metrics.grey_prediction(o), "grey (a = b = 0)") for o in originals]]
    for model_dir, label, strength, upsample, calibration in zip(
            args.models, labels, strengths, upsamplers, calibrations, strict=True):
        artifact = load_artifact(model_dir)
        if calibration is not None:
            artifact = Artifact(artifact.model, artifact.config, {**artifact.metadata, "calibration": calibration})
        outputs = colorize_batch(artifact, originals, strength, upsample)  # a pass per photo shape
        columns.append([
            panel(out, f"{label}: {metrics.psnr(o, out):.1f} dB, C {metrics.colourfulness(out):.0f}")
            for o, out in zip(originals, outputs, strict=True)
        ])
    rows = [np.hstack([column[i] for column in columns]) for i in range(len(originals))]
    figure = cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), figure, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"{args.out}: {figure.shape[1]}x{figure.shape[0]}, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
