"""Batch colorization: Ray Data with 1 and 2 model actors against the single-process path.

Colorizes the same photos (default: the 200 of ../shared/data/bsds500/test, 481x321) three
ways in one run, each into a fresh folder, and reports seconds and images/s end to end
(model loading and actor start-up included, the Ray instance started beforehand), the time
to the first finished batch, and images/s after it (the rate a long archive would see), the
median of --repeat runs taken in turn:

- single process: what `colorize predict MODEL PHOTOS --out DIR --batch-size B` runs
  (colorize.batch_predict: batches ordered by aspect ratio within windows of two);
- Ray Data, 1 actor and 2 actors: what `colorize predict ... --address local --actors N`
  runs (colorize.distributed.batch_ray: map_batches over a pool of model actors, batches of B, one
  forward pass per image size in a batch).

It also counts the outputs that differ from the single-process bytes, and by how much: a
batch that mixes image sizes is padded to a common shape, and TensorFlow's arithmetic can
move a value by one level between batch sizes.

    python bench/ray_data.py --model /tmp/srv_fit/model         # a few minutes
    python bench/ray_data.py --quick                             # 20 photos, trains a model
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import SHARED_DATA, machine, require_shared_data  # noqa: E402
from bench.serve_load import train_model  # noqa: E402


def timed(model: Path, photos: Path, out: Path, batch_size: int, actors: int = 0) -> dict:
    """One run of the single-process path (actors=0) or of Ray Data with `actors` actors:
    seconds end to end, to the first finished batch, and images/s after that first batch."""
    from colorize import batch_predict
    from colorize.distributed import batch_ray

    stamps: list[tuple[float, int]] = []
    started = time.perf_counter()

    def on_batch(outcomes) -> None:
        assert all(o.status == "done" for o in outcomes), outcomes
        stamps.append((time.perf_counter() - started, len(outcomes)))

    pairs = batch_predict.plan([photos], out)
    if actors:
        batch_ray.run(model, pairs, address="local", actors=actors, batch_size=batch_size,
                      on_batch=on_batch)
    else:
        from colorize.artifact import load_artifact

        batch_predict.run(load_artifact(model), pairs, batch_size=batch_size, on_batch=on_batch)
    first, total = stamps[0][0], stamps[-1][0]
    later = sum(n for _, n in stamps[1:])
    steady = later / (total - first) if later else float("nan")  # one batch only: no rate
    return {"total": total, "first": first, "steady": steady}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.png")}


def largest_difference(a: bytes, b: bytes) -> int:
    """The largest difference of one channel value between two PNGs, in levels."""
    from colorize.images import decode_image

    return int(abs(decode_image(a).astype(int) - decode_image(b).astype(int)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: train a small one)")
    parser.add_argument("--photos", type=Path, help="folder (default bsds500/test)")
    parser.add_argument("--limit", type=int, default=200, help="at most this many photos")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (median reported)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 photos, once")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.repeat = 20, 1

    print(machine(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-rd-", dir="/tmp"))
    model = args.model or train_model(work / "fit", epochs=2)
    source = args.photos or require_shared_data() / "bsds500" / "test"
    photos = work / "photos"  # the first --limit photos, linked into one folder
    photos.mkdir()
    for path in sorted(Path(source).glob("*.jpg"))[: args.limit]:
        (photos / path.name).symlink_to(path.resolve())
    count = len(list(photos.iterdir()))
    print(f"{count} photos from {source}, model {model}, batch {args.batch_size}", flush=True)

    import ray

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    runs: dict[str, list[dict]] = {"single process": [], "Ray Data, 1 actor": [],
                                   "Ray Data, 2 actors": []}
    folders = {}
    for repeat in range(args.repeat):  # the three in turn, so drifting load hits each alike
        for actors, name in enumerate(runs):
            folders[name] = work / f"{actors}-actors-{repeat}"
            runs[name].append(timed(model, photos, folders[name], args.batch_size, actors))
            print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in runs[name][-1].items()),
                  flush=True)
    ray.shutdown()

    def median(name: str, key: str) -> float:
        values = sorted(run[key] for run in runs[name])
        return values[len(values) // 2]

    single = files(folders["single process"])
    base_total, base_steady = median("single process", "total"), median("single process", "steady")
    print("\n| path | seconds end to end | images/s end to end | first batch (s) | images/s "
          "after it | vs single process (end to end, after the first batch) | outputs "
          "differing from single (largest difference) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in runs:
        total, first, steady = (median(name, k) for k in ("total", "first", "steady"))
        out = files(folders[name])
        assert len(out) == count, f"{name}: {len(out)} outputs for {count} photos"
        differ = [k for k in single if out[k] != single[k]]
        levels = max((largest_difference(out[k], single[k]) for k in differ), default=0)
        print(f"| {name} | {total:.1f} | {count / total:.2f} | {first:.1f} | {steady:.2f} | "
              f"{base_total / total:.2f}x, {steady / base_steady:.2f}x | {len(differ)} "
              f"({levels} level{'s' if levels != 1 else ''}) |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; data {SHARED_DATA}")


if __name__ == "__main__":
    main()
