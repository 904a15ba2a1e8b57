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

from colorize import signals
from colorize.errors import ColorizeError

# Modules with a `register(subparsers)` that adds their subcommands; optional until built.
SUBCOMMAND_MODULES = (
    "colorize.train_cli", "serve.cli", "tune.cli", "colorize.jobs", "colorize.pipeline",
    "colorize.local_cluster",
)

DATA_HELP = ("folder of colour photos, or 'sample'; repeat --data (or give a comma-separated "
             "list) to train on several folders together")


class _DataAction(argparse.Action):
    """--data, repeatable; each value may itself be a comma-separated list of folders.
    Given once or more, the value is a list (the default, when not given, is kept as is)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from colorize.data import data_sources

        current = getattr(namespace, self.dest, None)
        items = list(current) if isinstance(current, list) else []
        setattr(namespace, self.dest, items + data_sources(values))


def add_data_option(parser, default: str | None = "sample", required: bool = False,
                    help: str = DATA_HELP) -> None:
    """The one --data option: a folder, 'sample', or several folders (see colorize.data)."""
    parser.add_argument("--data", action=_DataAction, default=default, required=required,
                        metavar="DIR", help=help)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--image-size, --loss, ...), typed and explained from the
    dataclass itself, overriding the defaults (or --config FILE)."""
    import dataclasses

    from colorize.config import CHOICES, TrainConfig

    group = parser.add_argument_group("model and training (override --config)")
    group.add_argument("--config", type=Path, help="JSON file of configuration values")
    helps = TrainConfig.field_help()
    for field in dataclasses.fields(TrainConfig):
        kind = {"int": int, "float": float, "str": str, "bool": _yes_no}[str(field.type)]
        # Choices are listed, not enforced here: TrainConfig refuses a bad value in one line.
        choices = CHOICES.get(field.name)
        group.add_argument(
            "--" + field.name.replace("_", "-"), dest=field.name, type=kind, default=None,
            metavar="|".join(choices) if choices else ("yes|no" if kind is _yes_no else None),
            help=f"{helps.get(field.name, '')} (default: {field.default})",
        )


def _yes_no(value: str) -> bool:
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


def config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (None = not given)."""
    import dataclasses

    from colorize.config import TrainConfig

    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }


def config_from_args(args: argparse.Namespace):
    from colorize.config import TrainConfig

    base = TrainConfig.from_file(args.config) if getattr(args, "config", None) else None
    return TrainConfig.from_dict(config_overrides(args), base)


def _cmd_fit(args: argparse.Namespace) -> int:
    from colorize.experiment import ConfigSource
    from colorize.fit_job import run_fit
    from colorize.report import write_report
    from colorize.training import EpochProgress

    config = config_from_args(args)
    progress = [] if args.quiet else [EpochProgress(config.epochs, config.batch_size)]
    with signals.stage(f"training into {args.out}", f"the finished epochs are saved in "
                       f"{Path(args.out) / 'checkpoint'}: rerun the same command to resume"):
        metrics = run_fit(config, args.data, args.out, args.cache, verbose=0, callbacks=progress,
                          test_source=args.test_data)
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
    from colorize import batch_predict
    from colorize.artifact import load_artifact
    from colorize.colorizer import check_strength
    from colorize.console import Progress

    strength = check_strength(args.strength)
    pairs = batch_predict.plan(args.inputs, args.out, args.format, args.keep_extension)
    todo, skipped = batch_predict.pending(pairs, args.overwrite)
    counts = batch_predict.Counts(skipped=skipped)
    if todo:
        where = f" on Ray ({args.actors} actors)" if args.address else ""
        with signals.stage(f"colorizing into {args.out}{where}", f"{args.out} holds the "
                           "finished images: rerun the same command to do the rest"), \
                Progress(len(todo), "colorizing" + where) as progress:

            def after_batch(outcomes) -> None:
                for outcome in outcomes:
                    if outcome.status == "done":
                        counts.done += 1
                    else:
                        counts.failed += 1
                        print(f"failed: {outcome.source}: {outcome.error}", file=sys.stderr)
                progress.update(len(outcomes), failed=counts.failed)

            if args.address:  # the same batches on a Ray cluster's actors (Ray Data)
                from colorize import batch_ray

                batch_ray.run(args.model, todo, address=args.address, actors=args.actors,
                              batch_size=args.batch_size, strength=strength, fmt=args.format,
                              cpus_per_actor=args.cpus_per_actor, on_batch=after_batch)
            else:
                batch_predict.run(load_artifact(args.model), todo, batch_size=args.batch_size,
                                  strength=strength, fmt=args.format, on_batch=after_batch)
    print(counts.line(args.out))
    if counts.failed and not counts.done and not counts.skipped:
        raise ColorizeError(f"none of the {counts.failed} image(s) could be colorized (see above)")
    return 0


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
    add_data_option(fit_p)
    fit_p.add_argument("--out", required=True, type=Path, help="output folder (resumes if present)")
    fit_p.add_argument("--cache", type=Path, help="decoded-data cache folder")
    fit_p.add_argument("--test-data", action=_DataAction, default=None, metavar="DIR",
                       help="score on these photos (a benchmark's test folder; repeatable) and "
                            "split --data 85/15 into training and validation only")
    fit_p.add_argument("--quiet", action="store_true", help="no line per epoch")
    add_config_options(fit_p)
    fit_p.set_defaults(func=_cmd_fit)

    ev = sub.add_parser("evaluate", help="PSNR, SSIM, colourfulness beside the grey prediction")
    ev.add_argument("model", type=Path, help="model folder (written by fit or train)")
    add_data_option(ev, default=None, required=True)
    ev.add_argument("--limit", type=int, default=0, help="evaluate only the first N photos")
    ev.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ev.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser(
        "predict", help="colorize images (files or folders), mirroring the input tree",
        description="Colorize image files and folders into --out, mirroring the input tree "
        "(a/x.jpg -> OUT/a/x.png). Existing outputs are skipped (a rerun finishes an "
        "interrupted run) unless --overwrite; images are colorized in batches.")
    pr.add_argument("model", type=Path, help="model folder (written by fit or train)")
    pr.add_argument("inputs", nargs="+", help="image files or folders")
    pr.add_argument("--out", required=True, type=Path, help="output folder")
    pr.add_argument("--format", default="png", choices=("png", "jpeg", "webp"))
    pr.add_argument("--strength", type=float, default=1.0,
                    help="colour strength: 0 grey, 1 the model's calibrated colour (default), "
                    "up to 3 more vivid")
    pr.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    pr.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    pr.add_argument("--keep-extension", action="store_true",
                    help="name outputs x.jpg.png (needed when x.jpg and x.png share a folder)")
    ray_data = pr.add_argument_group("on a Ray cluster, with Ray Data (colorize.batch_ray)")
    ray_data.add_argument("--address", help="Ray cluster ('auto', 'ray://HOST:10001', or "
                          "'local' for a Ray instance on this machine)")
    ray_data.add_argument("--actors", type=int, default=2, help="model actors (default 2)")
    ray_data.add_argument("--cpus-per-actor", type=float, default=1.0)
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
    # From the start, the first Ctrl-C or SIGTERM stops the command cleanly (signals.py).
    with signals.handling():
        try:
            return _run(argv)
        except ColorizeError as exc:
            print(f"colorize: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            return _stop(exc)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        import_tensorflow_quietly()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


def _stop(exc: KeyboardInterrupt) -> int:
    """After a stop signal: shut down the Ray this command started, say where the work is."""
    import signal

    stop = exc if isinstance(exc, signals.Stopped) else signals.Stopped(signal.SIGINT)
    for signum in signals.SIGNALS:  # the stop is under way: further signals change nothing
        signal.signal(signum, signal.SIG_IGN)
    _shutdown_ray()
    what = f" {stop.what}" if stop.what else ""
    after = f"; {stop.after}" if stop.after else " (rerun the same command to resume)"
    print(f"colorize: stopped{what} on {signal.Signals(stop.signum).name}{after}",
          file=sys.stderr, flush=True)
    return stop.exit_code


def _shutdown_ray() -> None:
    """Stop the local Ray instance (or leave the cluster) this process started or joined."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        logging.getLogger("ray").setLevel(logging.ERROR)  # no teardown chatter after the message
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
