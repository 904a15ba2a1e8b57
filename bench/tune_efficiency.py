"""How much compute ASHA saves, what it costs in quality, and what Tune adds per epoch.

1. The same search (space, seeds, trial count, k folds) twice: with ASHA and without early
   stopping (FIFO). Figures: epochs trained (each epoch = k fold-epochs), wall time, and
   the best cross-validated SSIM (mean ± std over folds) each found.
   Targets: ASHA's epochs <= 40 % of FIFO's; ASHA's best within one CV std of FIFO's.
2. Tune's overhead: one fixed configuration trained as a Tune trial (k folds in
   lockstep) against the same folds trained by `colorize.training.fit` (what
   `colorize fit` runs), same epochs. Target: a trial's epoch at most 10 % slower.
3. Tune's scale curve: the same fixed trials (FIFO, same epochs) run one at a time with
   every CPU, then two at once with half the CPUs each; the ratio of their wall times is
   the speed-up that running trials side by side buys on this machine.

Run from the repository root:

    python bench/tune_efficiency.py                 # BSDS500 train+val subset, ~10-15 min on 2 cores
    python bench/tune_efficiency.py --quick         # smoke run, ~3 min
    python bench/tune_efficiency.py --only scaling  # part 3 alone, ~3 min
    python bench/tune_efficiency.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import machine  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bsds500"


def photo_subset(data: Path, limit: int, folder: Path) -> Path:
    """A folder of links to the first `limit` photos of data/train then data/val (sorted)."""
    from colorize.data import find_images

    parts = [data / p for p in ("train", "val") if (data / p).is_dir()] or [data]
    files = [f for part in parts for f in find_images(part)][: limit or None]
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        (folder / f"{i:04d}_{path.name}").symlink_to(path.resolve())
    return folder


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BSDS500 folder (train/ and val/ are used)")
    p.add_argument("--limit", type=int, default=60, help="photos used (first N of train then val)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--max-epochs", type=int, default=9)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=float, default=3)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--base-filters", type=int, default=8)
    p.add_argument("--overhead-epochs", type=int, default=5, help="epochs of the overhead comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scaling-trials", type=int, default=4, help="trials of the scale curve (part 3)")
    p.add_argument("--only", choices=["search", "overhead", "scaling"], action="append",
                   help="run only these parts (repeatable; default: all three)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "tune_efficiency")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args()
    if args.quick:
        args.limit, args.num_samples, args.max_epochs, args.folds = 24, 4, 3, 2
        args.image_size, args.depth, args.base_filters, args.overhead_epochs = 16, 2, 4, 3
    return args


def search(args, photos: Path, storage: Path, scheduler: str, space: dict, config) -> dict:
    from colorize.tune.service import run_tuning

    outcome = run_tuning(
        data=photos, name=scheduler, storage=storage, folds=args.folds,
        num_samples=args.num_samples, max_epochs=args.max_epochs, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, max_concurrent=os.cpu_count() or 1,
        cpus_per_trial=1, space=space, config=config, scheduler=scheduler, verbose=0,
    )
    best = outcome["best_config"]
    return {
        "epochs": sum(r.epochs for r in outcome["trials"]),
        "fold_epochs": sum(r.epochs for r in outcome["trials"]) * args.folds,
        "wall_s": outcome["seconds"],
        "best_ssim": best["ssim_mean"], "best_std": best["ssim_std"],
        "best": {k: best["config"][k] for k in space}, "best_trial_epochs": best["epochs"],
        "trials": [(r.params, r.epochs, r.status) for r in outcome["trials"]],
    }


def overhead(args, photos: Path, storage: Path, config) -> dict:
    """Per-epoch time of one Tune trial vs. training.fit on the same folds and epochs."""
    import keras

    from colorize.config import TrainConfig
    from colorize.training import fit
    from colorize.tune.service import TuneRequest, prepare_cv_data, run_tuning

    fixed = {"batch_size": [config.batch_size], "loss": [config.loss]}
    cpus = os.cpu_count() or 1
    started = time.time()
    outcome = run_tuning(
        data=photos, name="overhead", storage=storage, folds=args.folds, num_samples=1,
        max_epochs=args.overhead_epochs, space=fixed, config=config, scheduler="fifo",
        cpus_per_trial=cpus, verbose=0,
    )
    tune_total = time.time() - started
    (result,) = outcome["results"]
    frame = result.metrics_dataframe
    tune_epochs = list(frame["time_this_iter_s"])
    tune_train = list(frame["train_s"])  # the folds' own work inside each trial epoch

    request = TuneRequest(str(photos), "x", folds=args.folds, max_epochs=args.overhead_epochs,
                          space=fixed, config=config.to_dict())
    data = prepare_cv_data(request, config)
    fit_config = TrainConfig.from_dict(
        {"epochs": args.overhead_epochs, "patience": args.overhead_epochs + 1}, config
    )
    epoch_times = np.zeros(args.overhead_epochs)
    started = time.time()
    for i, (train, held) in enumerate(data.folds):  # like `colorize fit`: a checkpoint each epoch
        keras.backend.clear_session()
        stamps: list[float] = []
        clock = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs, stamps=stamps: stamps.append(time.time())
        )
        begin = time.time()
        fit(fit_config, data.tiles[train], data.tiles[held], callbacks=[clock], verbose=0,
            checkpoint_dir=storage / "overhead-fit" / f"fold_{i}")
        epoch_times += np.diff([begin, *stamps])
    fit_total = time.time() - started
    steady_tune = float(np.mean(tune_epochs[1:])) if len(tune_epochs) > 1 else float(tune_epochs[0])
    steady_fit = float(np.mean(epoch_times[1:])) if len(epoch_times) > 1 else float(epoch_times[0])
    return {
        "epochs": args.overhead_epochs,
        "tune_epoch_s": steady_tune, "fit_epoch_s": steady_fit,
        "tune_train_epoch_s": float(np.mean(tune_train[1:] if len(tune_train) > 1 else tune_train)),
        "tune_first_epoch_s": float(tune_epochs[0]), "fit_first_epoch_s": float(epoch_times[0]),
        "tune_total_s": tune_total, "fit_total_s": fit_total,
        "steady_ratio": steady_tune / steady_fit, "total_ratio": tune_total / fit_total,
    }


def scaling(args, photos: Path, storage: Path, config) -> dict:
    """Wall time of the same fixed trials run 1 at a time (all CPUs each) and 2 at a time
    (half each): the trials' threads follow their CPUs (tune/trainable.py)."""
    from colorize.tune.service import run_tuning

    cpus = os.cpu_count() or 1
    fixed = {"batch_size": [config.batch_size], "loss": [config.loss]}
    runs = {}
    for concurrent in (1, 2):
        outcome = run_tuning(
            data=photos, name=f"scaling-{concurrent}", storage=storage, folds=args.folds,
            num_samples=args.scaling_trials, max_epochs=args.overhead_epochs, space=fixed,
            config=config, scheduler="fifo", max_concurrent=concurrent,
            cpus_per_trial=max(1, cpus // concurrent), verbose=0,
        )
        epochs = sum(r.epochs for r in outcome["trials"])
        runs[concurrent] = {"wall_s": outcome["seconds"], "trial_epochs": epochs,
                            "epochs_per_s": epochs / outcome["seconds"]}
    return {"trials": args.scaling_trials, "epochs": args.overhead_epochs, "cpus": cpus, "runs": runs,
            "speedup": runs[2]["epochs_per_s"] / runs[1]["epochs_per_s"]}


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from colorize.config import TrainConfig

    print(f"machine: {machine()}")
    config = TrainConfig(image_size=args.image_size, depth=args.depth,
                         base_filters=args.base_filters, seed=args.seed)
    space = {"batch_size": [4, 8] if args.quick else [8, 16, 32, 64], "loss": ["mse", "ssim", "mse+ssim"]}
    if args.out.exists():
        shutil.rmtree(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        photos = photo_subset(args.data, args.limit, Path(tmp) / "photos")
        print(f"data: {len(list(photos.iterdir()))} photos of {args.data}; {args.folds} folds; "
              f"{args.num_samples} trials x up to {args.max_epochs} epochs; space {space}; "
              f"image {args.image_size}px, depth {args.depth}, {args.base_filters} filters")
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
        parts = set(args.only or ["search", "overhead", "scaling"])
        runs = cost = curve = None
        try:
            if "search" in parts:
                runs = {s: search(args, photos, args.out, s, space, config) for s in ("asha", "fifo")}
            if "overhead" in parts:
                cost = overhead(args, photos, args.out, config)
            if "scaling" in parts:
                curve = scaling(args, photos, args.out, config)
        finally:
            ray.shutdown()
    if runs:
        report_search(runs)
    if cost:
        report_overhead(cost, args.folds)
    if curve:
        report_scaling(curve)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                    "runs": runs, "overhead": cost, "scaling": curve}, indent=2, default=str)
    )
    print(f"\nfigures: {args.out / 'results.json'}")


def report_search(runs: dict) -> None:
    asha, fifo = runs["asha"], runs["fifo"]
    share = asha["epochs"] / fifo["epochs"]
    gap = fifo["best_ssim"] - asha["best_ssim"]
    print(f"\n{'':6}{'epochs':>8}{'fold-epochs':>13}{'wall s':>9}{'best SSIM':>11}{'± std':>8}  best config")
    for name, run in runs.items():
        print(f"{name:6}{run['epochs']:>8}{run['fold_epochs']:>13}{run['wall_s']:>9.1f}"
              f"{run['best_ssim']:>11.4f}{run['best_std']:>8.4f}  {run['best']}")
    print(f"ASHA/FIFO epochs: {share:.2f} (target <= 0.40: {'met' if share <= 0.40 else 'NOT met'}); "
          f"wall time ratio {asha['wall_s'] / fifo['wall_s']:.2f}")
    print(f"best SSIM gap FIFO - ASHA: {gap:+.4f} vs FIFO's CV std {fifo['best_std']:.4f} "
          f"({'met' if gap <= fifo['best_std'] else 'NOT met'})")


def report_overhead(cost: dict, folds: int) -> None:
    print(f"\nTune overhead ({cost['epochs']} epochs, {folds} folds, one fixed config):")
    print(f"  steady epoch: Tune trial {cost['tune_epoch_s']:.2f} s vs training.fit {cost['fit_epoch_s']:.2f} s"
          f" -> ratio {cost['steady_ratio']:.2f} (target <= 1.10: "
          f"{'met' if cost['steady_ratio'] <= 1.10 else 'NOT met'})")
    print(f"  of which the folds' own training and scoring: {cost['tune_train_epoch_s']:.2f} s; "
          f"Tune's reporting and checkpoint hand-over: "
          f"{cost['tune_epoch_s'] - cost['tune_train_epoch_s']:.2f} s per epoch")
    print(f"  first epoch (build + trace): Tune {cost['tune_first_epoch_s']:.2f} s vs fit {cost['fit_first_epoch_s']:.2f} s")
    print(f"  whole run incl. actor start and outputs: Tune {cost['tune_total_s']:.1f} s vs fit "
          f"{cost['fit_total_s']:.1f} s -> ratio {cost['total_ratio']:.2f}")


def report_scaling(curve: dict) -> None:
    print(f"\nTune scale curve ({curve['trials']} identical trials x {curve['epochs']} epochs, "
          f"{curve['cpus']} CPUs):")
    for concurrent, run in curve["runs"].items():
        print(f"  {concurrent} at a time ({max(1, curve['cpus'] // concurrent)} CPU each): "
              f"{run['wall_s']:.1f} s, {run['epochs_per_s']:.2f} trial-epochs/s")
    print(f"  2 at a time / 1 at a time: {curve['speedup']:.2f}x")


if __name__ == "__main__":
    main()
