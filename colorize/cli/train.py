"""`colorize train`: the final model on Ray Train workers (see colorize/distributed/train_driver.py).

    colorize train --from runs/tune --workers 2 --out runs/final
    colorize train --config best.json --data ../shared/data/bsds500 --workers 4 --gpu \
        --address auto --out /shared/runs/final
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from colorize.cli.options import (
    DATA_HELP,
    add_config_options,
    add_data_option,
    add_logger_option,
    config_from_args,
    config_source,
    positive,
)
from colorize.console import quality_table
from colorize.errors import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train the final model on Ray Train workers, evaluate it, write a report"
    )
    parser.add_argument(
        "--from", dest="experiment", type=Path,
        help="tuning experiment folder (its best_config.json; --data defaults to its data)",
    )
    add_data_option(parser, default=None, help=DATA_HELP + " (default: the experiment's)")
    parser.add_argument("--out", type=Path, default=Path("runs/train"),
                        help="output folder; rerunning with the same one resumes (default runs/train)")
    parser.add_argument("--workers", type=positive(int), default=2, help="Ray Train workers (default 2)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (use_gpu=True)")
    parser.add_argument("--cpus-per-worker", type=positive(float), default=1,
                        help="CPUs reserved per worker (default 1)")
    parser.add_argument("--address", help="Ray cluster to join (e.g. auto, ray://host:10001); "
                        "default: start a local Ray instance")
    parser.add_argument("--autoscale", action="store_true",
                        help="the cluster adds nodes on demand: skip the free-resources check")
    parser.add_argument("--lr-scaling", choices=("sqrt", "linear", "none"), default="sqrt",
                        help="learning rate for the batch x workers global batch (default sqrt)")
    parser.add_argument("--max-failures", type=positive(int, allow_zero=True), default=2,
                        help="worker-group restarts from the last checkpoint (default 2)")
    parser.add_argument("--name", help="Ray Train run name, and the MLflow / W&B run's "
                        "(default: the --out folder's name)")
    parser.add_argument("--storage", help="Ray Train storage path: a folder (default OUT/ray), or a "
                        "storage URI such as s3://bucket/prefix (credentials and AWS_ENDPOINT_URL "
                        "from the environment)")
    parser.add_argument("--cache", type=Path, help="decoded-data cache folder")
    add_logger_option(parser, "train")
    add_config_options(parser, auto=True)
    parser.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from colorize.distributed import tracking
    from colorize.distributed.train_driver import run_training

    tracking.check(args.logger)  # a missing package: one line, before any data is read
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        raise UsageError(f"--name must be letters, digits, '.', '_' or '-', got {args.name!r}")
    source, data = resolve_source(args)
    metrics = run_training(
        source, data, args.out, workers=args.workers, use_gpu=args.gpu, address=args.address,
        name=args.name, storage=args.storage, cpus_per_worker=args.cpus_per_worker,
        lr_scaling=args.lr_scaling, max_failures=args.max_failures, autoscale=args.autoscale,
        cache_dir=args.cache, loggers=args.logger,
    )
    print(quality_table(metrics["test"]))
    print(f"model: {metrics['artifact']}\nreport: {metrics['report']}")
    return 0


def resolve_source(args: argparse.Namespace):
    """(ConfigSource, data source) from --from / --config and the override flags."""
    import dataclasses

    from colorize import presets
    from colorize.presets import load_experiment

    if args.experiment is not None:
        if args.config != presets.AUTO:
            raise UsageError("give either --from EXPERIMENT_DIR or --config, not both")
        source = load_experiment(args.experiment)
        source = dataclasses.replace(source, config=config_from_args(args, base=source.config))
        data = args.data or source.best.get("data")
    else:
        data = args.data
    if not data:
        raise UsageError("--data is required (a folder of colour photos, or 'sample')")
    if args.experiment is None:
        source = config_source(args, data)
    return source, data
