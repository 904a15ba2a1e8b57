"""Photos in, training arrays out: discovery, decoding, splits, crops, cache and tf.data.

A data source is a folder of photos, several folders (names prefixed by folder), or
"sample" (the colour photos shipped with scikit-image and matplotlib). Discovery follows
symbolic links (each real file once, loops refused) and skips hidden entries. Each photo
becomes one or more square tiles of side
`working_side(size)`; training takes random `size` crops (+ flips) of them, evaluation the
centre crop. With `views` > 1, training also gets tiles cut from the photo enlarged to
2..views times the working scale (closer views, more distinct samples); validation and test
use the working scale only, as inference does. Splits are made by photo, so no photo lends
tiles to two splits.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from colorize import lab
from colorize.errors import ColorizeError
from colorize.images import IMAGE_EXTENSIONS, decode_image, is_greyscale, split_alpha
from colorize.preprocess import resize_short_side, working_side

log = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # train, validation, test
NO_TEST_FRACTIONS = (0.85, 0.15, 0.0)  # when the test photos come from another folder
CACHE_VERSION = 3  # bump when the stored layout changes
SAMPLE = "sample"
DataSource = str | Path | Sequence[str | Path]  # one folder or 'sample', or several


@dataclass(frozen=True)
class Photo:
    name: str  # relative path, or "astronaut" for a sample photo
    load: Callable[[], np.ndarray]  # -> the full-resolution RGB uint8 photo
    path: Path | None = None  # the file, for the cache key; None for built-in photos
    # photo -> its training tiles at a side; None: tile_photo (the sample set cuts its own)
    cut: Callable[[np.ndarray, int], list[np.ndarray]] | None = None
    folder: int = 0  # which of the data source's folders it came from (an index into them)


@dataclass
class PhotoSet:
    """Decoded photos cut into tiles: what training and tuning consume."""

    names: list[str]  # one per usable photo
    tiles: np.ndarray  # (N, S, S, 3) uint8
    owner: np.ndarray  # (N,) index into names of each tile's photo
    skipped: dict[str, str] = field(default_factory=dict)  # photo name -> why it was skipped
    fingerprint: str = ""  # hash of the photo list and the tile size
    scale: np.ndarray | None = None  # (N,) 1 = working scale, s = cut from the photo at s x
    folder: np.ndarray | None = None  # one per name: its Photo.folder (None: all the first)

    def folders(self) -> np.ndarray:
        """Each photo's folder, as an index into the data source's folders."""
        if self.folder is None:
            return np.zeros(len(self.names), dtype=np.int64)
        return np.asarray(self.folder, dtype=np.int64)

    def tiles_of(self, photo_indices: Sequence[int], all_views: bool = False,
                 working_share: float = 0.0, folder: np.ndarray | None = None,
                 folder_balance: float = 1.0) -> np.ndarray:
        """Tiles of these photos: the working scale only, or every view (for training), mixed
        as `mix_training_tiles` says."""
        indices = np.flatnonzero(self.mask_of(photo_indices, all_views))
        if all_views:
            indices = mix_training_tiles(indices, self.scale, working_share, folder, folder_balance)
        return self.tiles[indices]

    def photos_of(self, photo_indices: Sequence[int], photos: Sequence[Photo]) -> list[Photo]:
        """The Photo (from `photos`, the list this set was decoded from) behind each of these
        indices into names: a skipped photo shifts the indices, so they are matched by name."""
        by_name = {photo.name: photo for photo in photos}
        return [by_name[self.names[i]] for i in photo_indices]

    def mask_of(self, photo_indices: Sequence[int], all_views: bool = False) -> np.ndarray:
        mask = np.isin(self.owner, np.asarray(photo_indices, dtype=np.int64))
        if not all_views and self.scale is not None:
            mask &= self.scale == 1
        return mask


def mix_training_tiles(indices: np.ndarray, scale: np.ndarray | None, working_share: float,
                       folder: np.ndarray | None, folder_balance: float) -> np.ndarray:
    """Training tile `indices` with the working scale's share raised to `working_share`
    (`oversample_working_scale`), then the folders' shares evened by `folder_balance`
    (`balance_folders`; `folder`: each tile's folder number, None for one folder)."""
    if scale is not None:
        indices = oversample_working_scale(indices, scale, working_share)
    if folder is not None:
        indices = balance_folders(indices, folder, folder_balance)
    return indices


def oversample_working_scale(indices: np.ndarray, scale: np.ndarray, share: float) -> np.ndarray:
    """Training tile `indices` with those at the working scale (`scale` 1) repeated a whole
    number of times, so that they make up about `share` of the result (at least as many as
    they are). Inference sees photos at the working scale, but with `views` > 1 the closer
    views outnumber them (about 4 to 1 at views 2). 0 keeps the indices as they are."""
    working = indices[scale[indices] == 1]
    closer = indices[scale[indices] != 1]
    if share <= 0 or not len(working) or not len(closer):
        return indices
    repeats = max(1, round(share * len(closer) / ((1 - share) * len(working))))
    return np.concatenate([closer] + [working] * repeats)


def balance_folders(indices: np.ndarray, folder: np.ndarray, exponent: float) -> np.ndarray:
    """Training tile `indices` with each folder's repeated a whole number of times, so that a
    folder's share of them goes about as its tile count ** `exponent` (`folder`: each tile's
    folder number). 1 keeps them as they are (a folder's share is its size); 0 makes every
    folder's share alike; between, a small folder is not drowned by a large one, nor repeated
    as often as to match it (the sampling of multilingual corpora: shares as size ** alpha).
    The largest folder is never repeated."""
    if exponent >= 1 or not len(indices):
        return indices
    groups = [indices[folder[indices] == f] for f in np.unique(folder[indices])]
    largest = max(len(g) for g in groups)
    # a share as n ** exponent is a weight per tile of n ** (exponent - 1), relative to the largest
    repeats = [max(1, round((largest / len(g)) ** (1 - exponent))) for g in groups]
    return np.concatenate([np.tile(g, r) for g, r in zip(groups, repeats, strict=True)])


# --- discovery ----------------------------------------------------------------------------


def data_sources(source: DataSource) -> list[str]:
    """The folders (or 'sample') a data source names: one path, a list of them, or one string
    of comma-separated paths (a string naming an existing path is never split)."""
    items = [source] if isinstance(source, str | Path) else list(source)
    found: list[str] = []
    for item in items:
        text = str(item)
        if "," in text and not Path(text).expanduser().exists():
            found += [part.strip() for part in text.split(",") if part.strip()]
        elif text.strip():
            found.append(text)
    if not found:
        raise ColorizeError("--data is empty: give a folder of photos, several, or 'sample'")
    return found


def normalize_source(source: DataSource) -> str | list[str]:
    """One folder (or 'sample') as a string, several as a list: what is stored in JSON files."""
    sources = data_sources(source)
    return sources[0] if len(sources) == 1 else sources


def describe_source(source: DataSource) -> str:
    return ", ".join(data_sources(source))


def find_images(folder: str | Path) -> list[Path]:
    """Image files under `folder`, recursively, in a stable order.

    Symbolic links to folders and files are followed and each real file is listed once
    (under the first path it is found by); hidden files and folders (".name") are skipped;
    a link that leads back into its own ancestors is refused, as is one that never resolves.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise ColorizeError(f"data folder not found: {root} (give a folder of photos or 'sample')")
    if not root.is_dir():
        raise ColorizeError(f"--data must be a folder of photos, got the file {root}")
    found: dict[str, Path] = {}  # real path -> the first path it was found by
    _walk(root, (os.path.realpath(root),), found, set())
    files = sorted(found.values())
    if not files:
        raise ColorizeError(
            f"no images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)}, any case; "
            "hidden files and folders are skipped)"
        )
    line = _count_line(root, files)
    log.log(logging.DEBUG if line in _ANNOUNCED else logging.INFO, "found %s", line)
    _ANNOUNCED.add(line)  # later listings of the same folder (e.g. for evaluation) stay quiet
    return files


_ANNOUNCED: set[str] = set()


def _walk(directory: Path, chain: tuple[str, ...], found: dict[str, Path], walked: set[str]) -> None:
    """Depth-first, sorted; `chain` holds the real paths of the folders above (loop check)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list %s: %s", directory, exc.strerror or exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_symlink() and not _link_target_exists(path):
            log.warning("skipping %s: its symbolic link points to nothing", path)
            continue
        real = os.path.realpath(path)
        if entry.is_dir():  # follows symbolic links
            if real in chain:
                raise ColorizeError(
                    f"symbolic link loop: {path} leads back to {real}, a folder above it; "
                    "remove the link or point --data below it"
                )
            if real not in walked:  # a folder linked twice is read once
                walked.add(real)
                _walk(path, (*chain, real), found, walked)
        elif entry.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            found.setdefault(real, path)


def _link_target_exists(path: Path) -> bool:
    """False for a dangling link; a ColorizeError for a link that loops onto itself."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ColorizeError(
                f"symbolic link loop: {path} never resolves (links pointing at each other); "
                "remove or fix the link"
            ) from None
        raise
    return True


def _count_line(root: Path, files: list[Path]) -> str:
    """'12 image files in DIR (a 5, b 7)': per top-level subfolder, the way users check a run."""
    counts = Counter(
        p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "(top level)"
        for p in files
    )
    parts = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    line = f"{len(files)} image file(s) in {root}"
    return line if list(counts) == ["(top level)"] else f"{line} ({parts})"


def folder_photos(folder: str | Path, prefix: str = "") -> list[Photo]:
    """The photos of one folder, named by their path under it (after `prefix`)."""
    root = Path(folder).expanduser()
    return [
        Photo(prefix + p.relative_to(root).as_posix(), _file_loader(p), p) for p in find_images(root)
    ]


def _file_loader(path: Path) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return split_alpha(decode_image(path.read_bytes()))[0]

    return load


def sample_photos(prefix: str = "") -> list[Photo]:
    """The 6 colour photos shipped with scikit-image and matplotlib (256 px short side); each
    is one photo for the split and cuts into 128 px tiles (30 in all) for training."""
    from colorize import sample_data

    return [
        Photo(prefix + name, functools.partial(sample_data.load_sample_photo, name), cut=_cut_sample)
        for name in sample_data.sample_photo_names()
    ]


def _cut_sample(rgb: np.ndarray, side: int) -> list[np.ndarray]:
    from colorize.sample_data import cut_tiles

    return [tile_photo(tile, side)[0] for tile in cut_tiles(rgb)]


def photos_from(source: DataSource) -> list[Photo]:
    """The photos of a folder, of several folders, or the built-in sample set ('sample').

    With several folders each photo's name starts with its folder's label (the folder's
    name, or as many trailing path parts as make the labels distinct), so names stay
    unique, and its `folder` is the folder's index; a file reached through two of the
    folders is taken once, for the first.
    """
    sources = data_sources(source)
    if len(sources) == 1:
        return _photos_of(sources[0], "")
    photos: list[Photo] = []
    seen: set[str] = set()
    for number, (folder, label) in enumerate(zip(sources, folder_labels(sources), strict=True)):
        for photo in _photos_of(folder, label + "/"):
            key = os.path.realpath(photo.path) if photo.path is not None else photo.name
            if key not in seen:
                seen.add(key)
                photos.append(replace(photo, folder=number))
    line = f"{len(photos)} photo file(s) from {len(sources)} sources: {', '.join(sources)}"
    log.log(logging.DEBUG if line in _ANNOUNCED else logging.INFO, "%s", line)
    _ANNOUNCED.add(line)
    return photos


def _photos_of(source: str, prefix: str) -> list[Photo]:
    return sample_photos(prefix) if source == SAMPLE else folder_photos(source, prefix)


def folder_labels(sources: list[str]) -> list[str]:
    """Shortest distinct trailing path parts: bsds500/train, bsds500/val -> train, val."""
    parts = [
        (SAMPLE,) if s == SAMPLE else Path(s).expanduser().absolute().parts[1:] or ("root",)
        for s in sources
    ]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ColorizeError(f"--data names the same folder twice: {', '.join(sources)}")


# --- decoding, tiling and cache -----------------------------------------------------------


def load_photoset(
    source: DataSource, size: int, cache_dir: str | Path | None = None, min_photos: int = 3,
    views: int = 1,
) -> PhotoSet:
    """Decode every photo of `source` into tiles for crop side `size`, via the disk cache."""
    photoset = load_photos(photos_from(source), size, cache_dir, views)
    if len(photoset.names) < min_photos:
        raise ColorizeError(
            f"{describe_source(source)} has {len(photoset.names)} usable colour photo(s); at least {min_photos} "
            "are needed (greyscale and undecodable files are skipped)"
        )
    return photoset


def load_photos(
    photos: list[Photo], size: int, cache_dir: str | Path | None = None, views: int = 1
) -> PhotoSet:
    """Tiles of any list of photos (e.g. several folders together), via the disk cache."""
    key = _cache_key(photos, size, views)
    cache_file = _cache_path(cache_dir, key)
    photoset = _read_cache(cache_file)
    if photoset is None:
        photoset = _decode_all(photos, size, views)
        photoset.fingerprint = key
        _write_cache(cache_file, photoset)
    if photoset.skipped:
        log.warning(
            "skipped %d of %d photos: %s",
            len(photoset.skipped),
            len(photos),
            "; ".join(f"{n} ({why})" for n, why in list(photoset.skipped.items())[:10]),
        )
    return photoset


def _decode_all(photos: list[Photo], size: int, views: int = 1) -> PhotoSet:
    names: list[str] = []
    tiles: list[np.ndarray] = []
    owner: list[int] = []
    scale: list[float] = []
    skipped: dict[str, str] = {}
    folder: list[int] = []
    side = working_side(size)
    for photo in photos:
        try:
            rgb = photo.load()
        except ColorizeError as exc:
            skipped[photo.name] = str(exc)
            continue
        except OSError as exc:
            skipped[photo.name] = f"unreadable: {exc.strerror or exc}"
            continue
        if is_greyscale(rgb):
            skipped[photo.name] = "greyscale (no colour to learn from)"
            continue
        for s in range(1, views + 1):
            if s == 1:
                photo_tiles = photo.cut(rgb, side) if photo.cut else tile_photo(rgb, side)
            else:
                photo_tiles = view_tiles(rgb, side, s)
            owner += [len(names)] * len(photo_tiles)
            scale += [s] * len(photo_tiles)
            tiles += photo_tiles
        names.append(photo.name)
        folder.append(photo.folder)
    stack = np.stack(tiles) if tiles else np.zeros((0, side, side, 3), np.uint8)
    return PhotoSet(
        names, stack, np.asarray(owner, dtype=np.int64), skipped, scale=np.asarray(scale, np.uint8),
        folder=np.asarray(folder, dtype=np.int64),
    )


def view_tiles(rgb: np.ndarray, side: int, scale: int) -> list[np.ndarray]:
    """Square tiles of `side` on an even grid over the photo resized to a short side of
    `scale` x `side` (never enlarged past its own resolution: a small photo gives fewer)."""
    h, w = rgb.shape[:2]
    short = min(scale * side, min(h, w))
    if short < 1.5 * side:
        return []  # too small to give views closer than the working scale
    factor = short / min(h, w)
    new_h, new_w = round(h * factor), round(w * factor)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
    rows, cols = max(1, round(new_h / side)), max(1, round(new_w / side))
    tops = np.linspace(0, new_h - side, rows).round().astype(int)
    lefts = np.linspace(0, new_w - side, cols).round().astype(int)
    return [np.ascontiguousarray(resized[t : t + side, x : x + side]) for t in tops for x in lefts]


def tile_photo(rgb: np.ndarray, side: int) -> list[np.ndarray]:
    """Resize the short side to `side`, then cut square tiles evenly along the long side."""
    resized = resize_short_side(rgb, side)  # the scale inference works at (preprocess.py)
    new_h, new_w = resized.shape[:2]
    count = max(1, round(max(new_h, new_w) / side))
    span = max(new_h, new_w) - side
    starts = [round(i * span / (count - 1)) if count > 1 else span // 2 for i in range(count)]
    if new_h >= new_w:
        return [np.ascontiguousarray(resized[s : s + side, :side]) for s in starts]
    return [np.ascontiguousarray(resized[:side, s : s + side]) for s in starts]


def _cache_key(photos: list[Photo], size: int, views: int = 1) -> str:
    entries = []
    for photo in photos:
        stat = photo.path.stat() if photo.path is not None and photo.path.exists() else None
        location = str(photo.path.resolve()) if photo.path is not None else photo.name
        size_and_date = [stat.st_size, stat.st_mtime_ns] if stat else [0, 0]
        entries.append([photo.name, location, *size_and_date])  # names are cached too
    payload = json.dumps([CACHE_VERSION, working_side(size), views, entries])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    return Path(os.environ.get("COLORIZE_CACHE", Path.home() / ".cache" / "colorize"))


def _cache_path(cache_dir: str | Path | None, key: str) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"photos-{key}.npz"


def _read_cache(path: Path) -> PhotoSet | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return PhotoSet(meta["names"], z["tiles"], z["owner"], meta["skipped"], meta["key"], z["scale"],
                            z["folder"])
    except Exception as exc:  # a corrupt cache is rebuilt, never fatal
        log.warning("ignoring unreadable cache %s: %s", path, exc)
        return None


def _write_cache(path: Path, photoset: PhotoSet) -> None:
    meta = {"names": photoset.names, "skipped": photoset.skipped, "key": photoset.fingerprint}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        scale = photoset.scale if photoset.scale is not None else np.ones(len(photoset.owner), np.uint8)
        np.savez(tmp, tiles=photoset.tiles, owner=photoset.owner, scale=scale, folder=photoset.folders(),
                 meta=json.dumps(meta))
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    except OSError as exc:
        log.warning("could not write the data cache %s: %s", path, exc)


# --- splits -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # photo indices
    val: np.ndarray
    test: np.ndarray


def split_photos(count: int, seed: int = 0, fractions=SPLIT_FRACTIONS) -> Split:
    """Deterministic 70/15/15 split of `count` photos (by photo), each part non-empty (the
    test part is empty only when its fraction is 0: the test photos come from elsewhere)."""
    parts = 3 if fractions[2] else 2
    if count < parts:
        raise ColorizeError(f"need at least {parts} photos to split into train/val"
                            f"{'/test' if parts == 3 else ''}, got {count}")
    order = np.random.default_rng(seed).permutation(count)
    n_test = max(1, int(round(count * fractions[2]))) if fractions[2] else 0
    n_val = max(1, int(round(count * fractions[1])))
    n_train = count - n_val - n_test
    return Split(
        np.sort(order[:n_train]),
        np.sort(order[n_train : n_train + n_val]),
        np.sort(order[n_train + n_val :]),
    )


def kfold(indices: Sequence[int] | np.ndarray, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, held-out) pairs over `indices`; every index is held out exactly once."""
    indices = np.asarray(indices)
    if k < 2:
        raise ColorizeError(f"k-fold cross-validation needs k >= 2, got {k}")
    if k > len(indices):
        raise ColorizeError(f"cannot make {k} folds from {len(indices)} photos; lower k")
    shuffled = np.random.default_rng(seed).permutation(indices)
    folds = np.array_split(shuffled, k)
    return [
        (np.sort(np.concatenate(folds[:i] + folds[i + 1 :])), np.sort(folds[i])) for i in range(k)
    ]


# --- arrays for the model -----------------------------------------------------------------


def center_crop(tiles: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, C) -> (N, size, size, C), the middle of each tile."""
    top = (tiles.shape[1] - size) // 2
    left = (tiles.shape[2] - size) // 2
    return tiles[:, top : top + size, left : left + size]


def eval_arrays(tiles: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre crops as (RGB uint8, normalised L, normalised a/b): validation data."""
    rgb = np.ascontiguousarray(center_crop(tiles, size))
    l_norm, ab = lab.split_lab(rgb)
    return rgb, l_norm, ab


def make_dataset(tiles: np.ndarray, size: int, batch_size: int, seed: int, training: bool,
                 zoom: float = 1.0):
    """A tf.data pipeline of (L, target) batches, the target (a/b, L) (`losses.split_target`):
    random crop + flip when training, repeating. With `zoom` > 1 each training crop is a
    square of random side between size / zoom and the tile's side, resized to `size`: the
    same photo seen up to `zoom` x closer or a little farther (TrainConfig.zoom)."""
    import tensorflow as tf

    if training:
        full_lab = lab.rgb_to_lab(tiles).astype(np.float32)
        ds = tf.data.Dataset.from_tensor_slices(full_lab)
        ds = ds.shuffle(len(full_lab), seed=seed, reshuffle_each_iteration=True).repeat()
        smallest, largest = max(8, round(size / zoom)), int(tiles.shape[1])

        def augment(image, index):
            crop_seed = tf.stack([tf.constant(seed, tf.int64), index])
            if zoom > 1.0:
                side = tf.random.stateless_uniform((), crop_seed + 2, smallest, largest + 1, tf.int32)
                image = tf.image.stateless_random_crop(image, tf.stack([side, side, 3]), seed=crop_seed)
                image = tf.image.resize(image, (size, size), antialias=True)
            else:
                image = tf.image.stateless_random_crop(image, (size, size, 3), seed=crop_seed)
            return tf.image.stateless_random_flip_left_right(image, seed=crop_seed + 1)

        ds = ds.enumerate().map(lambda i, im: augment(im, i), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = tf.data.Dataset.from_tensor_slices(lab.rgb_to_lab(center_crop(tiles, size)))

    def to_pair(image):
        # The target is (a/b, L) (`losses.join_target` on arrays): the model predicts a/b;
        # L lets a loss rebuild the photo.
        l_norm = lab.normalize_l(image[..., :1])
        return l_norm, tf.concat([lab.normalize_ab(image[..., 1:]), l_norm], axis=-1)

    ds = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    # tf.data's autotuner held up the end of many a model.fit call (its iterator's teardown),
    # and Tune's lockstep folds make one call per epoch. Without it the map and prefetch run
    # at the machine's parallelism, which keeps up as well.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE).with_options(options)


def steps_per_epoch(tile_count: int, batch_size: int, requested: int = 0) -> int:
    return requested or max(1, math.ceil(tile_count / batch_size))
