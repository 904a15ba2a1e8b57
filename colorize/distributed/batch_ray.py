"""Batch colorization of a photo archive on Ray Data: `colorize predict ... --address ADDR`.

    colorize predict MODEL photos/ --out colour/ --address auto --actors 4 --batch-size 16
    colorize predict MODEL photos/ --out colour/ --address local --actors 2   # one machine

The driver plans the work as the single-process path does (`colorize.batch_predict.plan`:
targets mirror the input tree; `pending`: targets already written are skipped, so a rerun
after an interruption finishes the rest). Ray Data streams the (source, target) pairs,
`batch_size` to a block, through a pool of `actors` model actors (`map_batches` with a
callable class): each actor loads the artifact once, then colorizes and writes each batch
with `batch_predict.colorize_files` (read, one `colorize.inference.colorize_batch`, atomic
write), once per image size in the batch: images of other sizes would be padded to a common
shape, which changes the colours near their borders. On a multi-node cluster MODEL, the
inputs and OUT must be on storage every node sees (the actors write there). `on_batch`
is called with each batch's outcomes as they stream back to the driver.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from colorize import batch_predict
from colorize.distributed.ray_session import limit_tf_threads
from colorize.errors import ColorizeError

log = logging.getLogger(__name__)


def by_size(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The pairs grouped by image size read from the file headers (unreadable: one group)."""
    from colorize.images import image_size_from_header

    groups: dict[tuple[int, int] | None, list[tuple[str, str]]] = {}
    for source, target in pairs:
        try:
            with open(source, "rb") as handle:
                size = image_size_from_header(handle.read(1 << 16))
        except OSError:
            size = None
        groups.setdefault(size, []).append((source, target))
    return list(groups.values())


class ModelActor:
    """One Ray Data actor: the artifact loaded once, then one batch of pairs per call."""

    def __init__(self, model_dir: str, strength: float, fmt: str, precision: str = "auto"):
        from colorize.artifact import load_artifact

        limit_tf_threads()
        self.artifact = load_artifact(model_dir, precision)
        self.strength, self.fmt = strength, fmt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = [(str(s), str(t)) for s, t in zip(batch["source"], batch["target"], strict=True)]
        outcomes = []
        for group in by_size(pairs):
            outcomes += batch_predict.colorize_files(self.artifact, group, self.strength, self.fmt)
        return {"source": np.array([str(o.source) for o in outcomes]),
                "target": np.array([str(o.target) for o in outcomes]),
                "status": np.array([o.status for o in outcomes]),
                "error": np.array([o.error for o in outcomes])}


def _remove_partials(folders) -> None:
    """Temporary files of an earlier run killed while writing (a target never is one)."""
    for folder in folders:
        for partial in Path(folder).glob(".*.partial"):
            partial.unlink(missing_ok=True)


def run(model_dir: str | Path, pairs: list[tuple[Path, Path]], *, address: str = "auto",
        actors: int = 2, batch_size: int = 8, strength: float = 1.0, fmt: str = "png",
        cpus_per_actor: float = 1.0, precision: str = "auto",
        on_batch: Callable[[list[batch_predict.Outcome]], None] = lambda outcomes: None,
        ) -> list[batch_predict.Outcome]:
    """Colorize `pairs` (from plan/pending) on the Ray cluster at `address`."""
    from colorize.artifact import read_metadata
    from colorize.distributed.ray_session import connect

    if actors < 1 or batch_size < 1:
        raise ColorizeError("--actors and --batch-size must be at least 1")
    if not pairs:
        return []
    read_metadata(model_dir)  # a wrong folder fails here, not in every actor
    _remove_partials({t.parent for _, t in pairs})
    connect(address)
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False  # the caller shows progress
    items = [{"source": str(s), "target": str(t)} for s, t in pairs]
    # One block per batch: each actor call gets `batch_size` consecutive pairs.
    dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_size))
    results = dataset.map_batches(
        ModelActor, fn_constructor_kwargs={"model_dir": str(Path(model_dir).absolute()),
                                           "strength": strength, "fmt": fmt, "precision": precision},
        batch_size=batch_size, batch_format="numpy", concurrency=actors, num_cpus=cpus_per_actor)
    outcomes: list[batch_predict.Outcome] = []
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        done = [batch_predict.Outcome(Path(s), Path(t), str(status), str(error))
                for s, t, status, error in zip(batch["source"], batch["target"], batch["status"],
                                               batch["error"], strict=True)]
        outcomes += done
        on_batch(done)
    return outcomes
