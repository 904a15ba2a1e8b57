"""Batch colorization of a photo archive on Ray Data: `colorize predict ... --address ADDR`.

    colorize predict MODEL photos/ --out colour/ --address auto --actors 4 --batch-size 16
    colorize predict MODEL photos/ --out colour/ --address local --actors 2   # one machine

The driver plans the work: every image under the inputs gets a target under OUT that mirrors
the input tree (`a/x.jpg` -> `OUT/a/x.png`), and targets already written are skipped, so a
rerun after an interruption finishes the rest (`overwrite` redoes them). Ray Data streams
the (source, target) pairs, `batch_size` to a block, through a pool of `actors` model actors
(`map_batches` with a callable class): each actor loads the artifact once, then reads,
colorizes and writes each batch with `colorize_files`, which calls
`colorize.colorizer.colorize_batch` (the function Serve uses) once per image size in the
batch. Each target is written to a temporary file beside it and renamed, so an interrupted
run never leaves half a file. On a multi-node cluster MODEL, the inputs and OUT must be on
storage every node sees (the actors write there). `progress` is called as results stream
back to the driver.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colorize.errors import ColorizeError

log = logging.getLogger(__name__)

FORMATS = ("png", "jpeg", "webp")


@dataclass
class Counts:
    total: int = 0  # images among the inputs
    done: int = 0
    skipped: int = 0  # their target was already written
    failed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds else 0.0
        return (f"{self.done + self.skipped + self.failed}/{self.total} images: done "
                f"{self.done}, skipped {self.skipped} already there, failed {self.failed} "
                f"({rate:.1f} images/s)")


def plan(inputs: Sequence[str | Path], out_dir: str | Path, fmt: str = "png"):
    """(source, target) for every image among `inputs`, the targets mirroring the input tree
    below the deepest folder that holds all inputs; two sources on one target are refused."""
    from colorize.data import find_images

    if fmt not in FORMATS:
        raise ColorizeError(f"unsupported output format {fmt!r}; use {', '.join(FORMATS)}")
    out_dir = Path(out_dir).expanduser().absolute()
    sources: dict[str, Path] = {}
    roots = []
    for item in inputs:
        path = Path(item).expanduser().absolute()
        if not path.exists():
            raise ColorizeError(f"input not found: {path}")
        roots.append(path if path.is_dir() else path.parent)
        for file in find_images(path) if path.is_dir() else [path]:
            sources.setdefault(os.path.realpath(file), file)
    if not sources:
        raise ColorizeError("no images among the inputs")
    base = Path(os.path.commonpath([str(r) for r in roots]))
    pairs, seen = [], {}
    for source in sorted(sources.values()):
        target = out_dir / source.relative_to(base).with_suffix(f".{fmt}")
        if target in seen:
            raise ColorizeError(f"{seen[target]} and {source} would both be written to {target}")
        seen[target] = source
        pairs.append((source, target))
    return pairs


def pending(pairs, overwrite: bool = False):
    """(pairs still to do, how many were skipped because their target exists)."""
    todo = list(pairs) if overwrite else [(s, t) for s, t in pairs if not t.exists()]
    return todo, len(pairs) - len(todo)


def colorize_files(artifact, pairs, fmt: str = "png") -> list[tuple[str, str]]:
    """Read, colorize and write each pair; (status, error) per pair. An unreadable file
    fails alone."""
    from colorize.images import decode_image

    results: list[tuple[str, str]] = [("failed", "")] * len(pairs)
    images, ready = [], []
    for i, (source, _) in enumerate(pairs):
        try:
            images.append(decode_image(Path(source).read_bytes()))
            ready.append(i)
        except (ColorizeError, OSError) as exc:
            results[i] = ("failed", str(exc))
    for i, result in zip(ready, _colorize_by_size(artifact, images), strict=True):
        results[i] = _write(Path(pairs[i][1]), result, fmt)
    return results


def _colorize_by_size(artifact, images: list[np.ndarray]) -> list[np.ndarray | str]:
    """One `colorize_batch` per image size in the batch: images of other sizes would be padded
    to a common shape, which changes the colours near their borders (by up to ~15 levels on
    bsds500's 481x321 and 321x481 photos). A failing group is retried image by image."""
    from colorize.colorizer import colorize_batch

    results: list[np.ndarray | str] = [""] * len(images)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape[:2], []).append(i)
    for members in groups.values():
        try:
            outputs = colorize_batch(artifact, [images[i] for i in members])
        except ColorizeError:
            outputs = []
            for i in members:
                try:
                    outputs.append(colorize_batch(artifact, [images[i]])[0])
                except ColorizeError as exc:
                    outputs.append(str(exc))
        for i, output in zip(members, outputs, strict=True):
            results[i] = output
    return results


def _write(target: Path, result, fmt: str) -> tuple[str, str]:
    from colorize.images import encode_image, split_alpha

    if isinstance(result, str):
        return "failed", result
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(encode_image(*split_alpha(result), fmt))
        os.replace(partial, target)  # atomic: the target is whole or absent
    except (ColorizeError, OSError) as exc:
        partial.unlink(missing_ok=True)
        return "failed", str(exc)
    return "done", ""


def _limit_threads() -> None:
    """TensorFlow's thread pools sized to the actor's CPUs (as tune/trainable.py does for
    trials): by default each actor would use every core, and actors would thrash."""
    import ray
    import tensorflow as tf

    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))
    if cpus >= 1:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cpus)
            tf.config.threading.set_inter_op_parallelism_threads(min(cpus, 2))
        except RuntimeError:  # TensorFlow already initialised in this worker: keep it
            pass


def _remove_partials(folders) -> None:
    """Temporary files of an earlier run that was killed while writing (never a target)."""
    for folder in folders:
        for partial in Path(folder).glob(".*.partial"):
            partial.unlink(missing_ok=True)


class ModelActor:
    """One Ray Data actor: the artifact loaded once, then one batch of pairs per call."""

    def __init__(self, model_dir: str, fmt: str):
        from colorize.artifact import load_artifact

        _limit_threads()
        self.artifact = load_artifact(model_dir)
        self.fmt = fmt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(zip(batch["source"], batch["target"], strict=True))
        statuses, errors = zip(*colorize_files(self.artifact, pairs, self.fmt), strict=True)
        return {"source": batch["source"], "status": np.array(statuses),
                "error": np.array(errors)}


def run(model_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path, *,
        address: str = "auto", actors: int = 2, batch_size: int = 16, fmt: str = "png",
        overwrite: bool = False, cpus_per_actor: float = 1.0,
        progress: Callable[[Counts], None] | None = None) -> Counts:
    """Colorize every image among `inputs` into `out_dir` on the Ray cluster at `address`."""
    from colorize.artifact import read_metadata
    from colorize.ray_session import connect

    if actors < 1 or batch_size < 1:
        raise ColorizeError("--actors and --batch-size must be at least 1")
    read_metadata(model_dir)  # a wrong folder fails here, not in every actor
    pairs = plan(inputs, out_dir, fmt)
    todo, skipped = pending(pairs, overwrite)
    counts = Counts(total=len(pairs), skipped=skipped)
    if not todo:
        return counts
    _remove_partials({t.parent for _, t in todo})
    connect(address)
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False  # the caller shows progress
    items = [{"source": str(s), "target": str(t)} for s, t in todo]
    # One block per batch: each actor call gets `batch_size` consecutive pairs.
    dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_size))
    results = dataset.map_batches(
        ModelActor, fn_constructor_kwargs={"model_dir": str(Path(model_dir).absolute()),
                                           "fmt": fmt},
        batch_size=batch_size, batch_format="numpy", concurrency=actors, num_cpus=cpus_per_actor)
    started = time.perf_counter()
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        for source, status, error in zip(batch["source"], batch["status"], batch["error"],
                                         strict=True):
            if status == "done":
                counts.done += 1
            else:
                counts.failed += 1
                log.warning("failed %s: %s", source, error)
        counts.seconds = time.perf_counter() - started
        if progress:
            progress(counts)
    return counts


def run_from_cli(args) -> int:
    """`colorize predict MODEL INPUTS --out OUT --address ADDR [--actors N] ...`."""
    import sys

    last = [0.0]

    def show(counts: Counts) -> None:  # at most one line a second, and the last one
        if counts.seconds - last[0] >= 1 or counts.done + counts.failed + counts.skipped \
                == counts.total:
            last[0] = counts.seconds
            print(counts.line(), file=sys.stderr, flush=True)

    counts = run(args.model, args.inputs, args.out, address=args.address, actors=args.actors,
                 batch_size=args.batch_size, fmt=args.format, overwrite=args.overwrite,
                 cpus_per_actor=args.cpus_per_actor, progress=show)
    print(counts.line())
    print(f"outputs in {Path(args.out).absolute()}")
    return 2 if counts.failed and not counts.done else 0
