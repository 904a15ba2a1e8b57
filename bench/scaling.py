"""Ray Train scaling: training throughput on 1 and 2 workers, and `colorize train` end to end.

    python bench/scaling.py                 # throughput + end-to-end on bsds500 train+val
    python bench/scaling.py --skip-e2e      # throughput only (~5 min on 2 cores)
    python bench/scaling.py --quick         # smoke run on the built-in sample photos

Part 1 runs the same TensorflowTrainer (MultiWorkerMirroredStrategy, per-worker batch
--batch-size) as 1 worker x 1 CPU (the baseline), 2 workers x 1 CPU, and 1 worker x 2 CPUs
(TensorFlow's own threads on both cores), each in a fresh Ray Train run, and reports the
training images per second of the last (warm) epoch, steps only, and each one's ratio to
the baseline. Part 2 times `colorize train` (2 workers) on ../shared/data/bsds500
train + val from start to report and prints its test-split figures beside the grey
prediction's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, require_shared_data  # noqa: E402

LAYOUTS = ((1, 1), (2, 1), (1, 2))  # (workers, CPUs per worker); the first is the baseline


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: sample photos, tiny model")
    parser.add_argument("--skip-e2e", action="store_true", help="only the throughput part")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="per worker")
    parser.add_argument("--steps", type=int, default=30, help="training steps per epoch (throughput)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per throughput run (last one timed)")
    parser.add_argument("--e2e-epochs", type=int, default=15, help="epochs of the end-to-end run")
    parser.add_argument("--out", type=Path, default=None, help="end-to-end output folder (default: temporary)")
    parser.add_argument("--cache", type=Path, default=None, help="decoded-data cache folder")
    return parser.parse_args(argv)


def training_folder(shared: Path, target: Path) -> Path:
    """A folder of links to bsds500/train and bsds500/val (the photos stay where they are)."""
    target.mkdir(parents=True, exist_ok=True)
    for part in ("train", "val"):
        for photo in sorted((shared / "bsds500" / part).iterdir()):
            link = target / f"{part}-{photo.name}"
            if not link.exists():
                link.symlink_to(photo.resolve())
    return target


def throughput(config, prepared, layouts, work: Path) -> list[dict]:
    from colorize.distributed.train_driver import train_on_ray

    rows = []
    for workers, cpus in layouts:
        started = time.time()
        result = train_on_ray(
            config, prepared, work / "ray", f"w{workers}c{cpus}", workers, cpus_per_worker=cpus,
            max_failures=0,
        )
        rate = result.metrics["images_per_second"]
        rows.append({"workers": workers, "cpus_per_worker": cpus, "images_per_second": rate,
                     "run_seconds": time.time() - started})
        print(f"  {workers} worker(s) x {cpus} CPU: {rate:7.1f} images/s "
              f"(last epoch, steps only; whole run {time.time() - started:.0f} s)", flush=True)
    base = rows[0]["images_per_second"]
    for row in rows:
        row["ratio"] = row["images_per_second"] / base
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    import ray

    from colorize.config import TrainConfig
    from colorize.distributed.train_driver import run_training
    from colorize.prepared_data import prepare_data
    from colorize.presets import ConfigSource

    print(f"machine: {machine()}")
    print("Ray sees", os.cpu_count(), "CPUs: at most 2 one-CPU workers fit; a 2-worker run has no "
          "spare core for the driver, Ray or tf.data, so expect well under 2x.")
    work = Path(tempfile.mkdtemp(prefix="colorize-scaling-"))
    if args.quick:
        source, epochs, steps = "sample", 2, 4
        config = TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4, epochs=epochs,
                             steps_per_epoch=steps)
    else:
        source = str(training_folder(require_shared_data(), work / "bsds500-train-val"))
        config = TrainConfig(image_size=args.image_size, batch_size=args.batch_size,
                             epochs=args.epochs, steps_per_epoch=args.steps)

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        prepared = prepare_data(source, config, args.cache)
        print(f"data: {json.dumps(prepared.info()['tiles'])} tiles; per-worker batch "
              f"{config.batch_size}, {config.steps_per_epoch} steps/epoch, {config.epochs} epochs")
        print("throughput (training steps of the last epoch, all workers together):")
        rows = throughput(config, prepared, LAYOUTS, work)
        for row in rows[1:]:
            print(f"  ratio {row['workers']}x{row['cpus_per_worker']} / 1x1: {row['ratio']:.2f}")
        if not args.skip_e2e:
            e2e = TrainConfig(
                image_size=config.image_size, depth=config.depth, base_filters=config.base_filters,
                batch_size=config.batch_size, epochs=2 if args.quick else args.e2e_epochs,
            )
            out = args.out or work / "train"
            print(f"end to end: colorize train --data {'sample' if args.quick else 'bsds500 train+val'} "
                  f"--workers 2 --epochs {e2e.epochs} --image-size {e2e.image_size} "
                  f"--batch-size {e2e.batch_size} --out {out}", flush=True)
            started = time.time()
            metrics = run_training(ConfigSource(e2e, "defaults"), source, out, workers=2,
                                   cache_dir=args.cache)
            test = metrics["test"]
            print(f"  {time.time() - started:.0f} s end to end ({metrics['train_seconds']:.0f} s to "
                  f"the trained model), {metrics['epochs']} epochs, test split of {test['images']} photos:")
            for who in ("model", "grey"):
                s = test[who]
                print(f"  {who:6} PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  "
                      f"colourfulness {s['colourfulness']:.1f}")
            print(f"  truth  colourfulness {test['truth']['colourfulness']:.1f}; report {metrics['report']}")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
