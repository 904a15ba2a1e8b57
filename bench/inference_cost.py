"""Inference cost per photo and per megapixel of trained models, side by side in one run.

    python bench/inference_cost.py runs/fit/model runs/pretrained/model --labels recipe pretrained
    python bench/inference_cost.py MODEL --megapixels 0.15,1,4 --rounds 3

Times `colorize_batch` (what `colorize predict` and every Serve replica call: the working-
scale forward pass, the guided upsampling of a/b to full size and the composition with
the full-resolution L) on one bsds500/test photo resized to each size, one photo a call,
in the inference precision `auto` picks. The models run in rounds, interleaved, so a
shared machine's drifting load falls on all of them alike; each figure is the median over
rounds, and every model after the first is also given as a ratio to the first. The
forward pass works at the model's working side whatever the photo's size, so the cost
per megapixel falls as photos grow, down to the full-size upsampling's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine, require_shared_data  # noqa: E402
from colorize.images import decode_image  # noqa: E402
from colorize.inference import (
    colorize_batch,  # noqa: E402
    load_artifact,  # noqa: E402
)


def photo_at(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = (megapixels * 1e6 / (h * w)) ** 0.5
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def seconds_per_photo(artifact, photo: np.ndarray, repeats: int) -> float:
    colorize_batch(artifact, [photo])  # trace this shape once
    start = time.perf_counter()
    for _ in range(repeats):
        colorize_batch(artifact, [photo])
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="model folders written by fit or train")
    parser.add_argument("--labels", nargs="+", help="one name per model (default: the folder names)")
    parser.add_argument("--megapixels", default="0.15,1,4", help="photo sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="calls per size per round")
    args = parser.parse_args(argv)
    labels = args.labels or [m.parent.name if m.name == "model" else m.name for m in args.models]
    if len(labels) != len(args.models):
        parser.error("give one --labels entry per model")
    sizes = [float(v) for v in args.megapixels.split(",")]

    print(machine())
    source = sorted((require_shared_data() / "bsds500" / "test").iterdir())[0]
    rgb = decode_image(source.read_bytes())
    artifacts = [load_artifact(m) for m in args.models]
    for label, artifact in zip(labels, artifacts, strict=True):
        c = artifact.config
        print(f"{label}: encoder {c.encoder}, {c.image_size} px crops (working side "
              f"{round(c.image_size * 1.125)}), depth {c.depth}, {artifact.model.count_params():,} parameters")
    times = {(label, mp): [] for label in labels for mp in sizes}
    for _ in range(args.rounds):
        for mp in sizes:
            photo = photo_at(rgb, mp)
            for label, artifact in zip(labels, artifacts, strict=True):
                times[label, mp].append(seconds_per_photo(artifact, photo, args.repeats))
    print(f"\n{'megapixels':>10}  " + "  ".join(f"{label:>24}" for label in labels))
    for mp in sizes:
        cells = []
        for label in labels:
            ms = statistics.median(times[label, mp]) * 1e3
            cell = f"{ms:7.1f} ms ({ms / mp:6.1f}/MP)"
            if label != labels[0]:
                cell += f" {ms / (statistics.median(times[labels[0], mp]) * 1e3):.2f}x"
            cells.append(f"{cell:>24}")
        print(f"{mp:>10g}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
