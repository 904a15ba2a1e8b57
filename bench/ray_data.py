"""Batch colorization: Ray Data with 1 and 2 model actors against the single-process path.

Colorizes the same photos (default: the 200 of ../shared/data/bsds500/test, 481x321) three
ways in one run, each into a fresh folder, and reports images/s end to end (model loading
and actor start-up included, the Ray instance started beforehand):

- single process: `colorize predict MODEL PHOTOS --out DIR --batch-size B` (no --address;
  colorize.batch_predict: batches ordered by aspect ratio within windows of two);
- Ray Data, 1 actor and 2 actors: `colorize predict ... --address local --actors N`
  (colorize.batch_ray: map_batches over a pool of model actors, batches of B, one forward
  pass per image size in a batch).

It also counts the outputs that differ from the single-process bytes, and by how much: a
batch that mixes image sizes is padded to a common shape, and TensorFlow's arithmetic can
move a value by one level between batch sizes.

    python bench/ray_data.py --model /tmp/srv_fit/model         # a few minutes
    python bench/ray_data.py --quick                             # 20 photos, trains a model
"""

import argparse
import contextlib
import io
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


def timed_predict(argv: list[str]) -> float:
    """Seconds for `colorize predict ARGV`, its console output kept out of the report."""
    from colorize.cli import main

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["predict", *argv])
    if code != 0:
        raise SystemExit(f"colorize predict {' '.join(argv)} failed ({code})")
    return time.perf_counter() - started


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
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 photos")
    args = parser.parse_args()
    if args.quick:
        args.limit = 20

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
    folders = {"single process": work / "single"}
    seconds = {"single process": timed_predict([str(model), str(photos), "--out",
                                                 str(folders["single process"]),
                                                 "--batch-size", str(args.batch_size)])}
    for actors in (1, 2):
        name = f"Ray Data, {actors} actor{'s' if actors > 1 else ''}"
        folders[name] = work / f"actors-{actors}"
        seconds[name] = timed_predict([str(model), str(photos), "--out", str(folders[name]),
                                       "--address", "local", "--actors", str(actors),
                                       "--batch-size", str(args.batch_size)])
    ray.shutdown()

    single = files(folders["single process"])
    base = count / seconds["single process"]
    print("\n| path | seconds | images/s | vs single process | outputs differing from single "
          "(largest difference) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, s in seconds.items():
        out = files(folders[name])
        assert len(out) == count, f"{name}: {len(out)} outputs for {count} photos"
        differ = [k for k in single if out[k] != single[k]]
        levels = max((largest_difference(out[k], single[k]) for k in differ), default=0)
        print(f"| {name} | {s:.1f} | {count / s:.2f} | {count / s / base:.2f}x | "
              f"{len(differ)} ({levels} level{'s' if levels != 1 else ''}) |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; data {SHARED_DATA}")


if __name__ == "__main__":
    main()
