"""Colorization quality on real photos: the model beside the grey prediction.

    python bench/quality.py                          # mse and mse+rebalance, ~1 h on 2 cores
    python bench/quality.py --variants mse --epochs 10
    python bench/quality.py --variants bins,context --set views=2 --set steps_per_epoch=200
    python bench/quality.py --quick                  # smoke run on a few photos

Trains on ../shared/data/bsds500/{train,val} (+ imagenet-sample), holding 10 % of those
photos out for early stopping, then evaluates at full resolution on bsds500/test, which
nothing trains or tunes on: PSNR, SSIM and colourfulness of each variant beside the grey
prediction (a = b = 0) and the ground truth's colourfulness, with the time each took;
then each variant at several colour strengths (the trade-off curve, `tradeoff.png`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import machine, require_shared_data  # noqa: E402
from colorize import data  # noqa: E402
from colorize.artifact import Artifact, load_artifact, save_artifact  # noqa: E402
from colorize.config import TrainConfig  # noqa: E402
from colorize.evaluation import evaluate_photos, strength_sweep  # noqa: E402
from colorize.fit_run import calibrate  # noqa: E402
from colorize.inference import UPSAMPLERS  # noqa: E402
from colorize.training import fit  # noqa: E402

VARIANTS = {  # name -> configuration overrides; "rebalance:S" sets the strength S
    "mse": {"loss": "mse", "calibrate": False},  # the seed's model, as it was
    "rgb": {"loss": "rgb", "calibrate": False},  # the same, on the rebuilt photo's squared error
    "psnr": {"loss": "psnr", "calibrate": False},  # ... on each rebuilt crop's PSNR
    "rebalance": {"loss": "mse", "rebalance": 0.5},
    "mse+ssim": {"loss": "mse+ssim"},
    # regression with whole-image context and closer views, selection on PSNR, calibrated gain
    "context": {"loss": "mse", "global_context": True, "views": 2, "monitor": "psnr"},
    # Zhang et al.'s classification head with their rebalancing, plus the same context
    "bins": {"head": "bins", "rebalance": 0.5, "global_context": True, "views": 2, "monitor": "psnr"},
    "bins-plain": {"head": "bins", "global_context": True, "views": 2, "monitor": "psnr"},
}
STRENGTHS = (0.0, 0.75, 1.0, 1.25, 1.5, 2.0)


def variant(name: str) -> dict:
    kind, _, strength = name.partition(":")
    if kind not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)} (rebalance:S)")
    return {**VARIANTS[kind], **({"rebalance": float(strength)} if strength else {})}


def pool_photos(shared: Path, imagenet: bool, limit: int) -> list[data.Photo]:
    """bsds500 train + val (+ imagenet-sample), never bsds500/test."""
    photos = data.folder_photos(shared / "bsds500" / "train") + data.folder_photos(shared / "bsds500" / "val")
    if imagenet:
        photos += data.folder_photos(shared / "imagenet-sample")
    return photos[:limit] if limit else photos


def parse_sets(items: list[str]) -> dict:
    """--set key=value pairs (TrainConfig fields, typed by TrainConfig.from_dict)."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes key=value, got {item!r}")
        values[key.strip()] = value.strip()
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="mse,rebalance", help=f"comma list of {', '.join(VARIANTS)}, rebalance:S")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--base-filters", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--no-imagenet", action="store_true", help="train on bsds500 alone")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training photos")
    parser.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test photos")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-quality"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any TrainConfig field for every variant, e.g. --set views=2")
    parser.add_argument("--models", nargs="*", default=[], metavar="NAME=DIR",
                        help="also score these trained models (artifact folders)")
    parser.add_argument("--strengths", default=",".join(map(str, STRENGTHS)),
                        help="colour strengths of the trade-off sweep")
    parser.add_argument("--budgets", default="", metavar="DB,...",
                        help="also score each model calibrated with these colour budgets (dB of "
                             "validation a/b PSNR given up for colour: --colour-budget-db)")
    parser.add_argument("--colour-targets", default="", metavar="SHARE,...",
                        help="also score each model calibrated to these shares of the validation "
                             "truth's colourfulness (--colour-target)")
    parser.add_argument("--upsample", default="guided", metavar="METHOD,...",
                        help=f"how predicted a/b reach full size, one or more of {', '.join(UPSAMPLERS)}: "
                             "each model is scored with each, side by side (the first keeps its name)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 photos, 1 epoch, 5 test photos")
    args = parser.parse_args()
    upsamplers = [u for u in args.upsample.split(",") if u]
    if not upsamplers or set(upsamplers) - set(UPSAMPLERS):
        raise SystemExit(f"--upsample takes a comma list of {', '.join(UPSAMPLERS)}, got {args.upsample!r}")
    if args.quick:
        args.limit, args.epochs, args.test_limit, args.base_filters = 30, 1, 5, 8

    shared = require_shared_data()
    print(f"machine: {machine()}")
    started = time.time()
    base = TrainConfig(image_size=args.image_size, base_filters=args.base_filters, epochs=args.epochs,
                       patience=args.patience, batch_size=args.batch_size, precision=args.precision)
    sets = parse_sets(args.set)
    configs = {name: TrainConfig.from_dict({**variant(name), **sets}, base)
               for name in args.variants.split(",") if name}
    views = max([c.views for c in configs.values()] + [1])
    photos = pool_photos(shared, not args.no_imagenet, args.limit)
    pool = data.load_photos(photos, args.image_size, views=views)  # one photo set (tiles)
    order = np.random.default_rng(0).permutation(len(pool.names))
    n_val = max(1, len(order) // 10)
    val_tiles = pool.tiles_of(order[:n_val])
    val_photos = pool.photos_of(order[:n_val], photos)  # a colour target is measured on them whole
    all_train = pool.mask_of(order[n_val:], all_views=True)
    test_photos = data.folder_photos(shared / "bsds500" / "test")
    test_photos = test_photos[: args.test_limit] if args.test_limit else test_photos
    print(f"data: {len(pool.names)} training photos ({all_train.sum()} train / {len(val_tiles)} "
          f"validation tiles), {len(test_photos)} test photos at full resolution; "
          f"decoded in {time.time() - started:.0f} s")

    strengths = [float(x) for x in args.strengths.split(",")]
    results, artifacts = {}, {}
    for name, config in configs.items():
        train_index = np.flatnonzero(all_train & (pool.scale <= config.views))
        train_tiles = pool.tiles[data.oversample_working_scale(train_index, pool.scale, config.working_share)]
        start = time.time()
        model, history = fit(config, train_tiles, val_tiles, verbose=2)
        train_s = time.time() - start
        calibration = calibrate(model, config, val_tiles, val_photos)
        artifact = artifacts[name] = Artifact(model, config, {"calibration": calibration})
        results.update(score(artifact, test_photos, strengths, upsamplers, name,
                             train_seconds=round(train_s), epochs=len(history["loss"]),
                             config=dataclasses.asdict(config), calibration=calibration))
        result = results[name]
        save_artifact(args.out / name / "model", model, config, {"test": result}, calibration=calibration)
        print(f"[{name}] trained {len(history['loss'])} epochs in {train_s:.0f} s; "
              f"test PSNR {result['model']['psnr']:.2f} dB, SSIM {result['model']['ssim']:.4f}, "
              f"colourfulness {result['model']['colourfulness']:.1f}", flush=True)
    for item in args.models:  # trained elsewhere: scored and swept the same way
        name, _, folder = item.partition("=")
        artifact = artifacts[name] = load_artifact(folder)
        results.update(score(artifact, test_photos, strengths, upsamplers, name,
                             train_seconds=artifact.metadata.get("metrics", {}).get("train_seconds", "-"),
                             epochs="-", config=artifact.config.to_dict(), calibration=artifact.calibration))

    recalibrations = {f"@{b:g}dB": {"colour_budget_db": b, "colour_target": 0.0}
                      for b in (float(x) for x in args.budgets.split(",") if x)}
    recalibrations |= {f"@{t:g}col": {"colour_target": t, "colour_budget_db": 0.0}
                       for t in (float(x) for x in args.colour_targets.split(",") if x)}
    for name, artifact in artifacts.items():  # each budget's or target's calibration, on test
        for suffix, fields in recalibrations.items():
            config = dataclasses.replace(artifact.config, **fields, calibrate=True)
            calibration = calibrate(artifact.model, config, val_tiles, val_photos)
            calibrated = Artifact(artifact.model, artifact.config, {"calibration": calibration})
            for upsample in upsamplers:
                scored = evaluate_photos(calibrated, test_photos, upsample=upsample)
                results[labelled(f"{name}{suffix}", upsample, upsamplers)] = {
                    **scored, "train_seconds": "-", "calibration": calibration, "upsample": upsample,
                    "sweep": {"1.0": scored["model"]}}

    any_result = next(iter(results.values()))
    grey, truth = any_result["grey"], any_result["truth"]
    print(f"\nbsds500/test, full resolution, {any_result['images']} photos")
    print(f"{'':20}{'PSNR dB':>9}{'dPSNR':>8}{'SSIM':>8}{'dSSIM':>9}{'colourful':>11}{'/truth':>8}{'train s':>9}")
    print(f"{'grey':20}{grey['psnr']:>9.2f}{'':>8}{grey['ssim']:>8.4f}{'':>9}{grey['colourfulness']:>11.1f}"
          f"{grey['colourfulness'] / truth['colourfulness']:>8.2f}")
    for name, r in results.items():
        m = r["model"]
        print(f"{name:20}{m['psnr']:>9.2f}{m['psnr'] - grey['psnr']:>+8.2f}{m['ssim']:>8.4f}"
              f"{m['ssim'] - grey['ssim']:>+9.4f}{m['colourfulness']:>11.1f}"
              f"{m['colourfulness'] / truth['colourfulness']:>8.2f}{r['train_seconds']:>9}")
    print(f"{'truth':20}{'':>9}{'':>8}{'':>8}{'':>9}{truth['colourfulness']:>11.1f}{1:>8.2f}")
    print("\ncolour strength sweep (1 = calibrated; calibration in brackets):")
    print(f"{'':22}{'strength':>9}{'PSNR dB':>9}{'dPSNR':>8}{'SSIM':>8}{'colourful':>11}")
    for name, r in results.items():
        for strength, m in r["sweep"].items():
            print(f"{name:22}{float(strength):>9.2f}{m['psnr']:>9.2f}{m['psnr'] - grey['psnr']:>+8.2f}"
                  f"{m['ssim']:>8.4f}{m['colourfulness']:>11.1f}")
        print(f"{'':22}{json.dumps(r['calibration'])}")
    print(f"total {time.time() - started:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"trade-off plot: {plot_tradeoff(results, grey, truth, args.out / 'tradeoff.png')}")


def labelled(name: str, upsample: str, upsamplers: list[str]) -> str:
    """A result's row name: the first upsampler keeps the model's name, others are suffixed."""
    return name if upsample == upsamplers[0] else f"{name}/{upsample}"


def score(artifact: Artifact, photos: list, strengths: list[float], upsamplers: list[str], name: str,
          **extra) -> dict:
    """`artifact` evaluated and swept along `strengths` with each upsampler, `extra` added
    to each result; keyed by row name (see `labelled`)."""
    rows = {}
    for upsample in upsamplers:
        result = evaluate_photos(artifact, photos, upsample=upsample)
        sweep = strength_sweep(artifact, photos, strengths, upsample=upsample)
        result.update(extra, upsample=upsample, sweep={str(k): v for k, v in sweep.items()})
        rows[labelled(name, upsample, upsamplers)] = result
    return rows


def plot_tradeoff(results: dict, grey: dict, truth: dict, path: Path) -> Path:
    """PSNR against colourfulness along each variant's strength sweep, grey and truth marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, r in results.items():
        points = sorted((m["colourfulness"], m["psnr"], float(s)) for s, m in r["sweep"].items())
        ax.plot([c for c, _, _ in points], [p for _, p, _ in points], marker="o", label=name)
        for c, p, s in points:
            ax.annotate(f"{s:g}", (c, p), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.axhline(grey["psnr"], color="grey", linestyle="--", label="grey prediction PSNR")
    ax.axvline(truth["colourfulness"], color="black", linestyle=":", label="ground truth colourfulness")
    ax.set_xlabel("colourfulness (Hasler & Suesstrunk)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("bsds500/test: accuracy against colour (labels: strength)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
