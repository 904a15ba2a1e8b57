"""`colorize pipeline`: tune, train the best configuration, serve it: one command.

    colorize pipeline                                  # the built-in sample photos
    colorize pipeline --data DIR --out runs/pipeline --num-samples 8 --workers 2

It chains the three services' own entry points on one Ray instance: `tune.service.
run_tuning` (k-fold search, writes OUT/tune/NAME/best_config.json and trials.csv),
`colorize.distributed.run_training` (the best configuration on Ray Train workers, writes
OUT/train/model and the report) and `serve.cli.start` (the model behind Ray Serve on
127.0.0.1). The output ends with the endpoint's URL and the report's path; the command then
serves until Ctrl-C or SIGTERM (exit code 130 or 143, the local Ray stopped; see
colorize/signals.py). `run_pipeline()` is the same without the waiting, for tests and scripts.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from colorize import signals
from colorize.errors import ColorizeError
from colorize.ray_session import connect

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("runs/pipeline")
# Batch sizes that fit the folds of small photo sets such as `sample` (6 photos, 30 tiles:
# with 3 folds over its 5 train+validation photos a fold trains on 12 to 20 tiles).
DEFAULT_SPACE = {"batch_size": [4, 8], "loss": ["mse", "ssim", "mse+ssim"]}
FINAL_EPOCHS = 20  # the final training's epoch bound unless --epochs says otherwise


def run_pipeline(
    data: str | list[str] = "sample",
    out: str | Path = DEFAULT_OUT,
    *,
    name: str = "search",
    config=None,
    space: str | Path | dict | None = None,
    folds: int = 3,
    num_samples: int = 4,
    max_epochs: int = 4,
    max_concurrent: int = 0,
    workers: int = 2,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    num_cpus: int | None = None,
    cache_dir: str | Path | None = None,
    verbose: int = 0,  # 1: the live trial table while tuning
    say=lambda line: log.info("%s", line),
) -> dict[str, Any]:
    """Tune, train, serve; returns {"experiment_dir", "best_config", "metrics", "artifact",
    "report", "endpoint", "dashboard_url", "seconds"}. Ray stays up (Serve runs on it)."""
    from colorize.config import TrainConfig
    from colorize.distributed import run_training
    from colorize.experiment import load_experiment
    from serve.cli import start
    from tune.service import ExperimentExists, run_tuning

    out = Path(out).expanduser().resolve()
    base = config or TrainConfig.from_dict({"epochs": FINAL_EPOCHS})
    # One Ray for the three steps: tune, train and serve each reuse it.
    dashboard = connect(address, num_cpus=num_cpus)[1]
    say(f"Ray dashboard: {dashboard}" if dashboard else "Ray: joined the running instance")
    started = time.time()

    say(f"1/3 tuning: {num_samples} trials, {folds}-fold cross-validation, up to {max_epochs} epochs")
    try:  # a rerun with the same options resumes the search (and the training) where it stopped
        tuned = run_tuning(
            data=data, name=name, storage=out / "tune", folds=folds, num_samples=num_samples,
            max_epochs=max_epochs, max_concurrent=max_concurrent, space=space or DEFAULT_SPACE,
            config=base, cache_dir=cache_dir, verbose=verbose,
        )
    except ExperimentExists:
        raise ColorizeError(f"{out} holds a pipeline run with other options: give another "
                            "--out, or remove that folder to start over") from None
    if not tuned["best_config"]:
        raise ColorizeError(f"no trial finished in {tuned['experiment_dir']}: see trials.csv")
    best = tuned["best_config"]
    say(f"best trial {best['trial_id']}: SSIM {best['ssim_mean']:.4f} ± {best['ssim_std']:.4f}")

    say(f"2/3 training the best configuration on {workers} Ray Train worker(s)")
    source = load_experiment(tuned["experiment_dir"])
    metrics = run_training(source, data, out / "train", workers=workers, cache_dir=cache_dir)

    say("3/3 serving the model")
    endpoint = start(metrics["artifact"], host=host, port=port)
    return {
        "experiment_dir": tuned["experiment_dir"], "best_config": best, "metrics": metrics,
        "artifact": metrics["artifact"], "report": metrics["report"], "endpoint": endpoint,
        "dashboard_url": dashboard, "seconds": round(time.time() - started, 1),
    }


def register(subparsers) -> None:
    from colorize.cli import DATA_HELP, add_config_options, add_data_option

    p = subparsers.add_parser(
        "pipeline", help="tune, train the best configuration and serve it, in one command",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_option(p, help=DATA_HELP + " (default: sample)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--space", type=Path, help="search space file (default: batch size 4/8 "
                   "and the three losses)")
    p.add_argument("--folds", type=int, default=3, help="k of k-fold cross-validation (default 3)")
    p.add_argument("--num-samples", type=int, default=4, help="tuning trials (default 4)")
    p.add_argument("--max-epochs", type=int, default=4, help="epochs of a full trial (default 4)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once (0: all that fit)")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers (default 2)")
    p.add_argument("--host", default="127.0.0.1", help="endpoint bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="endpoint port (default 8000)")
    p.add_argument("--address", help="Ray cluster to run on (e.g. auto); default: a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cache", type=Path, help="decoded-data cache folder")
    p.add_argument("--no-wait", action="store_true", help="return once the endpoint is up "
                   "(with a local Ray this also stops it)")
    add_config_options(p)
    p.set_defaults(func=_cmd_pipeline)


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from colorize.cli import config_from_args, quality_table
    from colorize.config import TrainConfig

    config = config_from_args(args)
    if args.epochs is None and args.config is None:
        config = TrainConfig.from_dict({"epochs": FINAL_EPOCHS}, config)
    result = run_pipeline(
        args.data, args.out, config=config, space=args.space, folds=args.folds,
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
