"""Every training path at the step's pace: images/s of one warm epoch, side by side.

    python bench/training_paths.py            # bsds500 train + val tiles, default model (~6 min)
    python bench/training_paths.py --quick    # smoke run on the built-in sample photos

The same configuration, tiles and steps per epoch through each way colorize trains:
1. bare `train_on_batch` on ready batches (the step alone: the baseline);
2. a `colorize fit` epoch (`training.fit`: tf.data, validation on the RGB image, checkpoint);
3. a Tune trial's lockstep epoch, per fold (`training.EpochTrainer.run_epoch` + scoring);
4. a Ray Train epoch on 1 worker (`colorize train`'s TensorflowTrainer under
   MultiWorkerMirroredStrategy, validation and report included).
Each is timed on its second (warm) epoch from epoch start to the end of everything the
epoch does, and printed as a ratio to the bare step measured in the same run. Paths 1-3
run in interleaved rounds (median), so drift on a shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import CpuUse, machine, require_shared_data  # noqa: E402
from bench.scaling import training_folder  # noqa: E402
from colorize import data, precision  # noqa: E402
from colorize.config import TrainConfig  # noqa: E402
from colorize.prepared_data import prepare_data  # noqa: E402
from colorize.training import EpochTrainer, compile_model, fit  # noqa: E402


class EpochClock(keras.callbacks.Callback):
    """Seconds of each whole epoch, from its start to the end of every callback before this one."""

    def __init__(self):
        super().__init__()
        self.seconds, self.started = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def bare_step(config: TrainConfig, train_tiles: np.ndarray) -> float:
    """Seconds of `steps_per_epoch` train_on_batch calls on batches already in memory."""
    model = compile_model(config, train_tiles)
    dataset = data.make_dataset(train_tiles, config.image_size, config.batch_size, config.seed, True)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset.take(config.steps_per_epoch)]
    for x, y in batches[:3]:  # warm up (the first calls trace the step)
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for x, y in batches:
        model.train_on_batch(x, y)
    return time.perf_counter() - started


def fit_epoch(config: TrainConfig, train_tiles, val_tiles, work: Path) -> float:
    clock = EpochClock()
    fit(dataclasses.replace(config, epochs=2, patience=0), train_tiles, val_tiles,
        callbacks=[clock], checkpoint_dir=work, verbose=0)
    return clock.seconds[-1]


def tune_fold_epoch(config: TrainConfig, train_tiles, val_tiles) -> float:
    trainer = EpochTrainer(config, train_tiles, val_tiles)
    trainer.run_epoch()
    started = time.perf_counter()
    trainer.run_epoch()
    return time.perf_counter() - started


def ray_train_epoch(config: TrainConfig, prepared, work: Path, cpus: int) -> tuple[float, float]:
    """(the whole second epoch, its training steps alone) in seconds, as the worker timed them."""
    from colorize.distributed.train_driver import train_on_ray

    result = train_on_ray(dataclasses.replace(config, epochs=2, patience=0), prepared, work,
                          "paths", 1, cpus_per_worker=cpus, max_failures=0)
    return float(result.metrics["epoch_seconds"]), float(result.metrics["train_seconds"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: sample photos, tiny model")
    parser.add_argument("--steps", type=int, default=60, help="training steps per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of paths 1-3")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--skip-ray", action="store_true", help="paths 1-3 only")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="colorize-paths-"))
    if args.quick:
        source, args.steps, args.rounds = "sample", 4, 1
        config = TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4,
                             steps_per_epoch=4, precision=args.precision)
    else:
        source = str(training_folder(require_shared_data(), work / "bsds500-train-val"))
        config = TrainConfig(steps_per_epoch=args.steps, precision=args.precision)
    prepared = prepare_data(source, config)
    train_tiles, val_tiles = prepared.tiles("train"), prepared.tiles("val")
    images = config.steps_per_epoch * config.batch_size
    print(f"config: {config.image_size} px, depth {config.depth}, {config.base_filters} filters, "
          f"batch {config.batch_size}, {config.steps_per_epoch} steps/epoch, precision "
          f"{config.precision} ({precision.training_policy(config.precision, config.fine_tunes_encoder)}); {len(train_tiles)} train / "
          f"{len(val_tiles)} validation tiles")
    times: dict[str, list[float]] = {"bare train_on_batch": [], "fit epoch (with validation)": [],
                                     "Tune lockstep epoch (one fold)": []}
    bare_cores = []
    for round_ in range(args.rounds):
        with CpuUse() as use:
            times["bare train_on_batch"].append(bare_step(config, train_tiles))
        bare_cores.append(use.busy("python").get("python", 0.0))
        times["fit epoch (with validation)"].append(
            fit_epoch(config, train_tiles, val_tiles, work / f"fit{round_}"))
        times["Tune lockstep epoch (one fold)"].append(tune_fold_epoch(config, train_tiles, val_tiles))
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()),
              flush=True)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nCPU while the bare step ran (mean cores): python {statistics.median(bare_cores):.2f}")
    if not args.skip_ray:
        import ray

        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            cpus = os.cpu_count() or 1
            with CpuUse() as use:
                whole, steps = ray_train_epoch(config, prepared, work / "ray", cpus)
            seconds[f"Ray Train epoch (1 worker x {cpus} CPUs)"] = whole
            seconds["  its training steps alone"] = steps
        finally:
            ray.shutdown()
        # What shares the cores with the worker while it trains: Ray's own processes, the driver.
        shares = use.busy("RayTrainWorker")
        print("CPU while the Ray Train worker trained (mean cores): "
              + ", ".join(f"{name} {cores:.2f}" for name, cores in list(shares.items())[:8] if cores >= 0.005))
    base = seconds["bare train_on_batch"]
    print(f"\n{'path':40}{'epoch s':>9}{'images/s':>10}{'/ bare':>8}")
    for name, s in seconds.items():
        print(f"{name:40}{s:>9.1f}{images / s:>10.1f}{base / s:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
