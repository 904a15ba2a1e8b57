"""`colorize predict` at the scale of a photo archive: plan, colorize in batches, write safely.

    pairs = plan(["photos/"], "out/", fmt="png")          # [(source, target), ...]
    todo, done_before = pending(pairs, overwrite=False)    # a rerun skips finished outputs
    outcomes = colorize_files(artifact, todo[:8])          # one batch: read, colorize, write

- **Targets mirror the inputs**: every input path is taken relative to the deepest folder
  that holds all the inputs (a folder input counts as itself, a file as its folder), so
  `a/x.jpg` and `b/x.jpg` become `OUT/a/x.png` and `OUT/b/x.png`. The extension becomes the
  output format's; two sources that would still share a target (`x.jpg` and `x.png` in one
  folder) are refused before any work, unless `keep_extension` names targets `x.jpg.png`.
  Files inside the output folder are never taken as inputs.
- **Nothing is lost or overwritten**: an existing target is skipped unless `overwrite`;
  each target is written to a hidden temporary file beside it and renamed into place
  (`os.replace`), so an interrupted run never leaves half a file and a rerun finishes the
  rest.
- **Batches**: `colorize_files` runs `colorize.inference.colorize_batch` (the function the
  Serve endpoint uses) on the whole batch, one forward pass per working shape (no photo
  padded to another's, so its colours do not depend on its batch); `run` orders each
  window of images by aspect ratio first, so photos of one shape share a pass.

`plan` and `colorize_files` are what a distributed runner (e.g. Ray Data's `map_batches`)
needs: plan on the driver, colorize batches of pairs on the workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colorize.errors import ColorizeError

log = logging.getLogger(__name__)

FORMATS = ("png", "jpeg", "webp")
WINDOW_BATCHES = 2  # batches decoded ahead and sorted by aspect ratio before colorizing


@dataclass(frozen=True)
class Outcome:
    source: Path
    target: Path
    status: str  # "done" or "failed"
    error: str = ""


@dataclass
class Counts:
    done: int = 0
    skipped: int = 0  # the target was already there
    failed: int = 0

    def line(self, out_dir: str | Path) -> str:
        redo = " (--overwrite redoes them)" if self.skipped else ""
        return (f"done {self.done}, skipped {self.skipped} already there{redo}, "
                f"failed {self.failed}; outputs in {out_dir}")


# --- planning -----------------------------------------------------------------------------


def plan(
    inputs: Sequence[str | Path], out_dir: str | Path, fmt: str = "png",
    keep_extension: bool = False,
) -> list[tuple[Path, Path]]:
    """(source, target) for every image among `inputs` (files, or folders searched
    recursively as for training data). Raises ColorizeError for a missing input, no images,
    or two sources mapping to one target."""
    if fmt not in FORMATS:
        raise ColorizeError(f"unsupported output format {fmt!r}; use {', '.join(FORMATS)}")
    out_dir = Path(out_dir).expanduser().absolute()
    sources, roots = _sources(inputs)
    real_out = os.path.realpath(out_dir)
    sources = [s for s in sources if not _inside(os.path.realpath(s), real_out)]
    if not sources:
        raise ColorizeError(f"no images among the inputs (files inside --out {out_dir} are not read)")
    base = Path(os.path.commonpath([str(r) for r in roots]))
    pairs = [(s, out_dir / _target_name(s.relative_to(base), fmt, keep_extension)) for s in sources]
    _refuse_collisions(pairs)
    return pairs


def _sources(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Image files of the inputs (absolute, each real file once) and the folder of each input."""
    from colorize.data import find_images
    from colorize.images import IMAGE_EXTENSIONS

    files: dict[str, Path] = {}
    roots: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser().absolute()
        if path.is_dir():
            roots.append(path)
            found = find_images(path)
        elif path.is_file():
            roots.append(path.parent)
            found = [path]
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                log.warning("%s does not have an image extension; trying to read it anyway", path)
        else:
            raise ColorizeError(f"input not found: {path}")
        for file in found:
            files.setdefault(os.path.realpath(file), file)
    return list(files.values()), roots


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _target_name(relative: Path, fmt: str, keep_extension: bool) -> Path:
    name = relative.name if keep_extension else relative.stem
    return relative.with_name(f"{name}.{fmt}")


def _refuse_collisions(pairs: list[tuple[Path, Path]]) -> None:
    by_target: dict[Path, Path] = {}
    for source, target in pairs:
        if target in by_target:
            clashes = len(pairs) - len({t for _, t in pairs})
            raise ColorizeError(
                f"{by_target[target]} and {source} would both be written to {target} "
                f"({clashes} such clash(es)); rename one, or add --keep-extension to name "
                f"outputs like {target.stem}{source.suffix}{target.suffix}"
            )
        by_target[target] = source


def pending(pairs: list[tuple[Path, Path]], overwrite: bool = False):
    """(pairs still to do, how many were skipped because their target exists)."""
    if overwrite:
        return list(pairs), 0
    todo = [(s, t) for s, t in pairs if not t.exists()]
    return todo, len(pairs) - len(todo)


# --- one batch ----------------------------------------------------------------------------


def colorize_files(
    artifact, pairs: Sequence[tuple[str | Path, str | Path]], strength: float = 1.0, fmt: str = "png"
) -> list[Outcome]:
    """Read, decode, colorize (one `colorize_batch` call) and write each pair's target.

    A file that cannot be read or decoded fails alone; the others are written."""
    from colorize.images import decode_image

    outcomes: dict[int, Outcome] = {}
    images: list[np.ndarray] = []
    ready: list[int] = []
    for i, (source, target) in enumerate(pairs):
        try:
            images.append(decode_image(Path(source).read_bytes()))
            ready.append(i)
        except (ColorizeError, OSError) as exc:
            outcomes[i] = Outcome(Path(source), Path(target), "failed", _reason(exc))
    for i, result in zip(ready, _colorize(artifact, images, strength), strict=True):
        source, target = pairs[i]
        outcomes[i] = _write(Path(source), Path(target), result, fmt)
    return [outcomes[i] for i in range(len(pairs))]


def _colorize(artifact, images: list[np.ndarray], strength: float) -> list[np.ndarray | str]:
    """colorize_batch on all; if the batch fails, image by image so one bad image fails alone."""
    from colorize.inference import colorize_batch

    if not images:
        return []
    try:
        return list(colorize_batch(artifact, images, strength))
    except ColorizeError:
        if len(images) == 1:
            raise
    results: list[np.ndarray | str] = []
    for image in images:
        try:
            results.append(colorize_batch(artifact, [image], strength)[0])
        except ColorizeError as exc:
            results.append(str(exc))
    return results


def _write(source: Path, target: Path, result: np.ndarray | str, fmt: str) -> Outcome:
    from colorize.images import encode_image, split_alpha

    if isinstance(result, str):
        return Outcome(source, target, "failed", result)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        rgb, alpha = split_alpha(result)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(encode_image(rgb, alpha, fmt))
        os.replace(partial, target)  # atomic: the target is whole or absent
    except (ColorizeError, OSError) as exc:
        return Outcome(source, target, "failed", _reason(exc))
    finally:  # a failure, or a stop (Ctrl-C) between the write and the replace, leaves none
        partial.unlink(missing_ok=True)
    return Outcome(source, target, "done")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"unreadable or unwritable: {exc.strerror or exc}"
    return str(exc)


# --- the whole run ------------------------------------------------------------------------


def run(
    artifact, pairs: list[tuple[Path, Path]], *, batch_size: int = 8, strength: float = 1.0,
    fmt: str = "png", on_batch: Callable[[list[Outcome]], None] = lambda outcomes: None,
) -> list[Outcome]:
    """Colorize `pairs` batch by batch (windows ordered by aspect ratio); `on_batch` after each."""
    if batch_size < 1:
        raise ColorizeError(f"--batch-size must be at least 1, got {batch_size}")
    outcomes: list[Outcome] = []
    window = batch_size * WINDOW_BATCHES
    for start in range(0, len(pairs), window):
        chunk = sorted(pairs[start : start + window], key=_aspect)
        for i in range(0, len(chunk), batch_size):
            batch = colorize_files(artifact, chunk[i : i + batch_size], strength, fmt)
            outcomes += batch
            on_batch(batch)
    return outcomes


def _aspect(pair: tuple[Path, Path]) -> float:
    """Width / height from the header alone (no decoding); 1.0 when it cannot be read."""
    from colorize.images import image_size_from_header

    try:
        with open(pair[0], "rb") as handle:
            size = image_size_from_header(handle.read(1 << 16))
    except OSError:
        size = None
    return size[0] / size[1] if size and size[1] else 1.0
