"""`colorize tune`: the search service's command line (a thin adapter over run_tuning).

    colorize tune --data DIR|sample --name NAME [--folds 3] [--num-samples 8] ...
    colorize tune --data DIR --name NAME --config photos --metric colour_score --logger mlflow
    colorize tune --resume --name NAME      # finish an interrupted search

The fixed TrainConfig fields come from --config (default auto: the 'pretrained' recipe for 200
photos or more, else the seed's small model, as `fit` and `train` choose) and the usual
training options (--image-size, ...); the searched fields go over them. Trials are ranked
on --metric (default: the one the base configuration selects its epochs on). --seed seeds
the fold split, Optuna's sampler and training alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from colorize.cli.options import (
    DATA_HELP,
    add_config_options,
    add_data_option,
    add_logger_option,
    add_metric_options,
    tuning_config,
)
from colorize.tune.service import DEFAULT_STORAGE  # defaults stated there
from colorize.tune.service import TuneRequest as Defaults


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune",
        help="search batch size and loss (and more) by k-fold CV with Ray Tune + Optuna + ASHA",
        description="Hyperparameter search: Optuna TPE proposes, k-fold cross-validation scores, "
        "ASHA stops poor trials early on the fold mean of --metric. The searched fields go over "
        "--config (by default the 'pretrained' recipe for 200 photos or more, ranked on val_psnr, "
        "else the seed's small model, ranked on val_ssim). Writes best_config.json, trials.csv "
        "and the metric's curves (ssim.png, psnr.png or colour_score.png) into STORAGE/NAME.",
    )
    add_data_option(p, default=None, help=DATA_HELP + " (not needed with --resume)")
    p.add_argument("--name", help="experiment name: its folder is STORAGE/NAME")
    # Left unset (None), each option takes colorize.tune.service.TuneRequest's default.
    p.add_argument("--storage",
                   help=f"folder of experiments (default {Defaults.storage}; on a cluster a folder "
                   "every node shares), or a storage URI such as s3://bucket/prefix (credentials "
                   "and AWS_ENDPOINT_URL from the environment)")
    p.add_argument("--folds", type=int,
                   help=f"k of k-fold cross-validation (default {Defaults.folds})")
    p.add_argument("--num-samples", type=int, help=f"trials to run (default {Defaults.num_samples})")
    p.add_argument("--max-epochs", type=int,
                   help=f"epochs of a full trial (default {Defaults.max_epochs})")
    p.add_argument("--grace-period", type=int,
                   help=f"epochs before ASHA may stop a trial (default {Defaults.grace_period})")
    p.add_argument("--reduction-factor", type=float, help="ASHA keeps 1/R of the trials at each "
                   f"rung (default {Defaults.reduction_factor:g})")
    p.add_argument("--no-early-stopping", dest="scheduler", action="store_const", const="fifo",
                   help="run every trial to --max-epochs (FIFO, no ASHA)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default "
                   f"{Defaults.max_concurrent}: as many as resources allow)")
    p.add_argument("--cpus-per-trial", type=float,
                   help=f"CPUs per trial (fractions ok; default {Defaults.cpus_per_trial:g})")
    p.add_argument("--gpus-per-trial", type=float,
                   help=f"GPUs per trial (fractions ok; default {Defaults.gpus_per_trial:g})")
    p.add_argument("--space", type=Path,
                   help="YAML or JSON search space merged over the default (batch_size, and loss; "
                   "learning_rate instead around the bins head)")
    p.add_argument("--address", help="join this Ray cluster (auto or ray://HOST:PORT); "
                   "default: start a local one")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="NAME",
                   help="finish the interrupted experiment NAME (or --name)")
    p.add_argument("--cache", type=Path, help="decoded-data cache folder")
    p.add_argument("--quiet", action="store_true", help="no Tune progress tables")
    add_metric_options(p, resume=True)
    add_logger_option(p, "tune")
    add_config_options(p, auto=True)
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args: argparse.Namespace) -> int:
    from colorize.errors import UsageError, usage_errors
    from colorize.tune.service import TuneRequest, run_tuning

    name = args.resume if isinstance(args.resume, str) else args.name
    if not name:
        raise UsageError("--name is required (the experiment's folder under --storage)")
    config = None
    if not args.resume:  # the search's options, checked as run_tuning will: bad ones are usage
        given = {k: getattr(args, k) for k in (
            "folds", "num_samples", "max_epochs", "grace_period", "reduction_factor",
            "max_concurrent", "cpus_per_trial", "gpus_per_trial", "scheduler", "metric", "mode")}
        with usage_errors():
            TuneRequest(data=args.data or "sample", name=name,
                        **{k: v for k, v in given.items() if v is not None}).check()
        if not args.data:
            raise UsageError("--data is required (a folder of photos or 'sample')")
        config = tuning_config(args, args.data)[0]
    outcome = run_tuning(
        data=args.data, name=name, storage=args.storage, folds=args.folds,
        num_samples=args.num_samples, max_epochs=args.max_epochs,
        grace_period=args.grace_period, reduction_factor=args.reduction_factor,
        max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, space=args.space, address=args.address,
        resume=bool(args.resume), config=config, cache_dir=args.cache,
        scheduler=args.scheduler, metric=args.metric, mode=args.mode, loggers=args.logger,
        verbose=0 if args.quiet else 1,
        on_dashboard=lambda url: print(f"Ray dashboard: {url}", flush=True) if url else None,
    )
    print(f"ranked on {outcome['metric']} ({outcome['mode']}):")
    print(outcome["summary"])
    folder = Path(outcome["experiment_dir"])
    if outcome["best_config"]:
        print(f"best: {best_line(outcome['best_config'])}")
        print(f"best config: {folder / 'best_config.json'}")
    print(f"trials: {folder / 'trials.csv'}\nplot: {outcome['plot']}")
    print(f"optuna study: sqlite:///{folder / 'optuna.db'} (optuna-dashboard can open it)")
    if outcome.get("experiment_uri", str(folder)) != str(folder):
        print(f"experiment: {outcome['experiment_uri']} (the files above are its local copy)")
    if outcome["interrupted"]:
        print("interrupted: rerun the same command (or `colorize tune --resume "
              f"{name} --storage {args.storage or DEFAULT_STORAGE}`) to finish it")
        return 130
    return 0


def best_line(best: dict) -> str:
    """'TRIAL  val_psnr 22.41 (SSIM 0.9012 ± 0.0031, PSNR 22.41 dB)': the best trial's ranked
    metric and its fold-mean scores."""
    metric, score = best.get("metric", "val_ssim"), best.get("score")
    ranked = f"{metric} {score:.4f}  " if isinstance(score, float) else ""
    return (f"{best['trial_id']}  {ranked}(SSIM {best['ssim_mean']:.4f} ± {best['ssim_std']:.4f}, "
            f"PSNR {best['psnr_mean']:.2f} dB)")
