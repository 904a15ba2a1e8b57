"""`colorize pipeline`: tune, train the best configuration and serve it, in one command
(the chaining itself is colorize/distributed/pipeline.py's `run_pipeline`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from colorize import signals
from colorize.cli.options import (
    DATA_HELP,
    add_config_options,
    add_data_option,
    add_logger_option,
    add_metric_options,
    positive,
    tuning_config,
)
from colorize.console import quality_table
from colorize.distributed import pipeline


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pipeline", help="tune, train the best configuration and serve it, in one command",
        description=pipeline.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_option(p, help=DATA_HELP + " (default: sample)")
    p.add_argument("--out", type=Path, default=pipeline.DEFAULT_OUT,
                   help=f"output folder (default {pipeline.DEFAULT_OUT})")
    p.add_argument("--space", type=Path, help="search space file (default: batch size 4/8 "
                   "and the losses mse, ssim, mse+ssim for the seed's model; tune's default, "
                   "batch size 8-64 and every loss around the photos recipe, batch size "
                   "and learning rate around the pretrained one)")
    p.add_argument("--folds", type=positive(int), default=3, help="k of k-fold cross-validation (default 3)")
    p.add_argument("--num-samples", type=positive(int), default=4, help="tuning trials (default 4)")
    p.add_argument("--max-epochs", type=positive(int), default=4, help="epochs of a full trial (default 4)")
    p.add_argument("--max-concurrent", type=positive(int, allow_zero=True), default=0, help="trials at once (0: all that fit)")
    p.add_argument("--workers", type=positive(int), default=2, help="Ray Train workers (default 2)")
    p.add_argument("--host", default="127.0.0.1", help="endpoint bind address (default 127.0.0.1)")
    p.add_argument("--port", type=positive(int), default=8000, help="endpoint port (default 8000)")
    p.add_argument("--address", help="Ray cluster to run on (e.g. auto); default: a local Ray")
    p.add_argument("--num-cpus", type=positive(int), help="CPUs of the local Ray (default: all)")
    p.add_argument("--cache", type=Path, help="decoded-data cache folder")
    p.add_argument("--no-wait", action="store_true", help="return once the endpoint is up "
                   "(with a local Ray this also stops it)")
    add_metric_options(p)
    add_logger_option(p, "pipeline")
    add_config_options(p, auto=True)
    p.set_defaults(func=_cmd_pipeline)


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from colorize import presets
    from colorize.config import TrainConfig
    from colorize.distributed import tracking
    from colorize.tune.search_space import default_space

    tracking.check(args.logger)  # a missing package: one line, before any data is read
    config, preset = tuning_config(args, args.data)
    if args.epochs is None and args.config == presets.AUTO and preset == "seed":
        config = TrainConfig.from_dict({"epochs": pipeline.FINAL_EPOCHS}, config)
    space = args.space or (default_space(config) if preset != "seed" else None)
    result = pipeline.run_pipeline(
        args.data, args.out, config=config, space=space, folds=args.folds,
        metric=args.metric, mode=args.mode, loggers=args.logger,
        num_samples=args.num_samples, max_epochs=args.max_epochs,
        max_concurrent=args.max_concurrent, workers=args.workers, host=args.host,
        port=args.port, address=args.address, num_cpus=args.num_cpus, cache_dir=args.cache,
        verbose=1, say=lambda line: print(line, flush=True),
    )
    print(quality_table(result["metrics"]["test"]))
    print(f"best config: {Path(result['experiment_dir']) / 'best_config.json'}")
    print(f"model: {result['artifact']}")
    if not args.no_wait:
        print("serving until Ctrl-C; try: curl -F image=@photo.jpg "
              f"{result['endpoint']}colorize -o colour.png")
    print(f"endpoint: {result['endpoint']}\nreport: {result['report']}", flush=True)
    if args.no_wait:
        return 0
    with signals.stage(f"serving {result['endpoint']}",
                       f"the model is {result['artifact']} (colorize serve MODEL serves it again)"):
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            if args.address:  # on a cluster the application would outlive this command
                from ray import serve

                serve.shutdown()
            raise
