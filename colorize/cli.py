"""The `colorize` command: one entry point, one subcommand per job.

The core subcommands (fit, evaluate, predict) live here; tune, train, serve and the
cluster commands register themselves from their own modules (see SUBCOMMAND_MODULES).
Every ColorizeError becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from colorize.errors import ColorizeError

# Modules with a `register(subparsers)` that adds their subcommands; optional until built.
SUBCOMMAND_MODULES = (
    "colorize.train_cli", "serve.cli", "tune.cli", "colorize.jobs", "colorize.pipeline",
    "colorize.local_cluster",
)

CONFIG_OPTIONS = {  # CLI flag -> TrainConfig field
    "image_size": int, "depth": int, "base_filters": int, "dropout": float, "loss": str,
    "rebalance": float, "batch_size": int, "learning_rate": float, "epochs": int,
    "patience": int, "steps_per_epoch": int, "seed": int, "precision": str,
}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """--image-size, --loss, ... overriding the defaults (or --config FILE)."""
    group = parser.add_argument_group("model and training (override --config)")
    group.add_argument("--config", type=Path, help="JSON file of configuration values")
    for name, kind in CONFIG_OPTIONS.items():
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)


def config_from_args(args: argparse.Namespace):
    from colorize.config import TrainConfig

    base = TrainConfig.from_file(args.config) if getattr(args, "config", None) else None
    values = {k: getattr(args, k) for k in CONFIG_OPTIONS if getattr(args, k, None) is not None}
    return TrainConfig.from_dict(values, base)


def _cmd_fit(args: argparse.Namespace) -> int:
    from colorize.experiment import ConfigSource
    from colorize.fit_job import run_fit
    from colorize.report import write_report

    config = config_from_args(args)
    metrics = run_fit(config, args.data, args.out, args.cache, verbose=0 if args.quiet else 2)
    test = metrics["test"]
    print(quality_table(test))
    source = ConfigSource(config, "file" if args.config else "defaults", str(args.config or ""))
    print(f"model: {Path(args.out) / 'model'}\nreport: {write_report(args.out, source)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from colorize.artifact import load_artifact
    from colorize.data import photos_from
    from colorize.evaluation import evaluate_photos

    artifact = load_artifact(args.model)
    photos = photos_from(args.data)
    if args.limit:
        photos = photos[: args.limit]
    result = evaluate_photos(artifact, photos)
    print(quality_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.address:  # a photo archive on a Ray cluster (Ray Data): colorize.batch_ray
        from colorize.batch_ray import run_from_cli

        return run_from_cli(args)
    from colorize.artifact import load_artifact
    from colorize.colorizer import colorize_image
    from colorize.images import IMAGE_EXTENSIONS, decode_image, encode_image, split_alpha

    inputs: list[Path] = []
    for item in args.inputs:
        path = Path(item)
        if path.is_dir():
            inputs += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            inputs.append(path)
        else:
            raise ColorizeError(f"input not found: {path}")
    if not inputs:
        raise ColorizeError("no images among the inputs")
    artifact = load_artifact(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in inputs:
        try:
            result = colorize_image(artifact, decode_image(path.read_bytes()))
        except ColorizeError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        rgb, alpha = split_alpha(result)
        target = out / f"{path.stem}.{args.format}"
        target.write_bytes(encode_image(rgb, alpha, args.format))
        print(target)
    return 2 if failures == len(inputs) else 0


def quality_table(result: dict) -> str:
    model, grey = result["model"], result["grey"]
    lines = [
        f"{'':14}{'PSNR (dB)':>10}{'SSIM':>8}{'colourful':>11}",
        f"{'model':14}{model['psnr']:>10.2f}{model['ssim']:>8.4f}{model['colourfulness']:>11.1f}",
        f"{'grey':14}{grey['psnr']:>10.2f}{grey['ssim']:>8.4f}{grey['colourfulness']:>11.1f}",
        f"{'ground truth':14}{'':>10}{'':>8}{result['truth']['colourfulness']:>11.1f}",
        f"({result['images']} images)",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize", description="Automatic image colorization: tune, train and serve on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit_p = sub.add_parser("fit", help="train a model on one machine and evaluate it")
    fit_p.add_argument("--data", default="sample", help="folder of colour photos, or 'sample'")
    fit_p.add_argument("--out", required=True, type=Path, help="output folder (resumes if present)")
    fit_p.add_argument("--cache", type=Path, help="decoded-data cache folder")
    fit_p.add_argument("--quiet", action="store_true", help="no Keras progress output")
    add_config_options(fit_p)
    fit_p.set_defaults(func=_cmd_fit)

    ev = sub.add_parser("evaluate", help="PSNR, SSIM, colourfulness beside the grey prediction")
    ev.add_argument("model", type=Path, help="model folder (written by fit or train)")
    ev.add_argument("--data", required=True, help="folder of colour photos, or 'sample'")
    ev.add_argument("--limit", type=int, default=0, help="evaluate only the first N photos")
    ev.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ev.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", help="colorize images (files or folders)")
    pr.add_argument("model", type=Path, help="model folder (written by fit or train)")
    pr.add_argument("inputs", nargs="+", help="image files or folders")
    pr.add_argument("--out", required=True, type=Path, help="output folder")
    pr.add_argument("--format", default="png", choices=("png", "jpeg", "webp"))
    ray_data = pr.add_argument_group("on a Ray cluster with Ray Data (outputs mirror the input "
                                     "tree; a rerun skips finished outputs)")
    ray_data.add_argument("--address", help="Ray cluster ('auto', 'ray://HOST:10001', or "
                          "'local' for a Ray instance on this machine)")
    ray_data.add_argument("--actors", type=int, default=2, help="model actors (default 2)")
    ray_data.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    ray_data.add_argument("--cpus-per-actor", type=float, default=1.0)
    ray_data.add_argument("--overwrite", action="store_true", help="redo outputs already written")
    pr.set_defaults(func=_cmd_predict)

    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with stderr muted at the file-descriptor level:
    its C++ start-up lines (oneDNN notice, CUDA probing on a CPU machine) ignore
    TF_CPP_MIN_LOG_LEVEL and would bury the one-line messages this CLI promises."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter off the console
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        import_tensorflow_quietly()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ColorizeError as exc:
        print(f"colorize: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("colorize: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
