"""Preparing the data of a fit: load the photos, decode and cache them (data.py), split
them by photo into train, validation and test, and cut the tiles each part trains or
scores on. `colorize fit`, `colorize train` (Ray Train), a tuning run and the benchmarks
all start from `prepare_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from colorize import data
from colorize.config import TrainConfig
from colorize.errors import ColorizeError


@dataclass
class PreparedData:
    """A photo set with its 70/15/15 split: the input of every training entry point."""

    source: str | list[str]  # one folder or 'sample', or several folders
    photoset: data.PhotoSet
    split: data.Split
    test_source: str | list[str] | None = None  # a separate test set: the split has no test part
    working_share: float = 0.0  # TrainConfig.working_share: the training tiles' mix of scales
    val_source: str | list[str] | None = None  # a separate validation set: the split's val part
    folder_balance: float = 1.0  # TrainConfig.folder_balance: the training tiles' mix of folders

    def tiles(self, part: str):
        """Training gets every view of its photos, its folders mixed as `folder_balance` says;
        validation and test the working scale."""
        train = part == "train"
        return self.photoset.tiles_of(getattr(self.split, part), all_views=train,
                                      working_share=self.working_share,
                                      folder=self.tile_folders() if train else None,
                                      folder_balance=self.folder_balance)

    def tile_folders(self) -> np.ndarray | None:
        """Each tile's folder (an index into `loaded_sources()`); None for one folder."""
        sources = self.loaded_sources()
        if len(sources) < 2:
            return None
        return self.photoset.folders()[self.photoset.owner]

    def photos(self, part: str) -> list[data.Photo]:
        if part == "test" and self.test_source is not None:
            return data.photos_from(self.test_source)
        return self.photoset.photos_of(getattr(self.split, part), data.photos_from(self.loaded_sources()))

    def loaded_sources(self) -> list[str]:
        """The folders the photo set was decoded from: --data, then --val-data."""
        extra = data.data_sources(self.val_source) if self.val_source is not None else []
        return data.data_sources(self.source) + extra

    def info(self) -> dict:
        return {
            "source": self.source,
            "fingerprint": self.photoset.fingerprint,
            "photos": {part: len(getattr(self.split, part)) for part in ("train", "val")}
            | {"test": len(self.photos("test")) if self.test_source else len(self.split.test)},
            "tiles": {part: len(self.tiles(part)) for part in ("train", "val")},
            **({"test_source": self.test_source} if self.test_source else {}),
            **({"val_source": self.val_source} if self.val_source else {}),
            "skipped": len(self.photoset.skipped),
        }


def prepare_data(source: data.DataSource, config: TrainConfig, cache_dir=None,
                 test_source: data.DataSource | None = None,
                 val_source: data.DataSource | None = None) -> PreparedData:
    """Load `source` and split it by photo: 70/15/15, or 85/15 train/validation when a
    separate `test_source` (say a benchmark's test folder) is what the model is scored on.
    A separate `val_source` is the validation split (model selection and the colour
    calibration, so its photos should be like those the model will colour, e.g. a
    benchmark's own validation folder): `source` then gives only training (and test) photos."""
    if test_source is not None:
        data.photos_from(test_source)  # a missing or empty folder fails here, before any decoding
        refuse_overlap("--test-data", test_source, "--data", source)
        if val_source is not None:
            refuse_overlap("--test-data", test_source, "--val-data", val_source)
    prepared = _prepare(source, config, cache_dir, test_source, val_source)
    # How the training tiles are mixed (scales, folders) is the config's, whichever way the split was made.
    return replace(prepared, working_share=config.working_share, folder_balance=config.folder_balance)


def _prepare(source: data.DataSource, config: TrainConfig, cache_dir,
             test_source: data.DataSource | None, val_source: data.DataSource | None) -> PreparedData:
    if val_source is not None:
        return _prepare_with_val(source, val_source, config, cache_dir, test_source)
    photoset = data.load_photoset(source, config.image_size, cache_dir, views=config.views)
    if test_source is None:
        split = data.split_photos(len(photoset.names), config.seed)
        return PreparedData(data.normalize_source(source), photoset, split)
    split = data.split_photos(len(photoset.names), config.seed, data.NO_TEST_FRACTIONS)
    return PreparedData(data.normalize_source(source), photoset, split, data.normalize_source(test_source))


def _prepare_with_val(source: data.DataSource, val_source: data.DataSource, config: TrainConfig,
                      cache_dir, test_source: data.DataSource | None) -> PreparedData:
    """`source` and `val_source` decoded as one photo set (one cache entry); the photos of
    `val_source` are the validation split, the rest train (85/15 train/test without a
    `test_source`)."""
    train_folders, val_folders = data.data_sources(source), data.data_sources(val_source)
    data.photos_from(val_source)  # a missing or empty folder fails here, before any decoding
    refuse_overlap("--val-data", val_source, "--data", source)
    folders = train_folders + val_folders
    photoset = data.load_photoset(folders, config.image_size, cache_dir, views=config.views)
    # The photos of the validation folders (listed last) are validation; a file reached
    # through both is taken once, for training.
    is_val = photoset.folders() >= len(train_folders)
    val, rest = np.flatnonzero(is_val), np.flatnonzero(~is_val)
    if not len(val) or not len(rest):
        empty = "--val-data" if not len(val) else "--data"
        raise ColorizeError(f"{empty} has no usable colour photo (greyscale and undecodable "
                            "files are skipped)")
    if test_source is not None:
        train, test = rest, np.zeros(0, dtype=rest.dtype)
    else:
        if len(rest) < 2:
            raise ColorizeError("--data needs at least 2 usable photos to split into train/test "
                                "(or give --test-data)")
        # The same 85/15 cut as a split without --val-data; its second part is the test here.
        cut = data.split_photos(len(rest), config.seed, data.NO_TEST_FRACTIONS)
        train, test = rest[cut.train], rest[cut.val]
    return PreparedData(
        data.normalize_source(source), photoset, data.Split(train, val, test),
        data.normalize_source(test_source) if test_source is not None else None,
        val_source=data.normalize_source(val_source),
    )


def refuse_overlap(flag: str, held_out: data.DataSource, other_flag: str,
                    other: data.DataSource) -> None:
    """Held-out photos (validation, test) must not be among those the model trains on."""
    for folder in data.data_sources(held_out):
        for used in data.data_sources(other):
            if _overlap(folder, used):
                raise ColorizeError(f"{flag} {folder} overlaps {other_flag} {used}: held-out "
                                    "photos must not be trained on; give each folder once")


def _overlap(a: str, b: str) -> bool:
    """Whether two data folders share photos: the same folder, or one inside the other."""
    if data.SAMPLE in (a, b):
        return a == b
    pa, pb = (Path(f).expanduser().resolve() for f in (a, b))
    return pa == pb or pa.is_relative_to(pb) or pb.is_relative_to(pa)
