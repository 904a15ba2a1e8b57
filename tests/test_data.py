"""colorize/data.py: discovery, skipping, tiling, cache, splits, k-fold and tf.data."""

import cv2
import numpy as np
import pytest

from colorize import data
from colorize.errors import ColorizeError
from tests.conftest import write_photos


def test_find_images_recurses_and_ignores_case(tmp_path):
    write_photos(tmp_path / "a" / "b", 2)
    (tmp_path / "a" / "UPPER.PNG").write_bytes((tmp_path / "a" / "b" / "photo_000.png").read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    names = [p.name for p in data.find_images(tmp_path)]
    assert sorted(names) == ["UPPER.PNG", "photo_000.png", "photo_001.png"]


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "missing", "not found"),
    (lambda p: (p / "f.png").write_bytes(b"x") and p / "f.png", "must be a folder"),
    (lambda p: p, "no images in"),
])
def test_bad_folders_give_clear_errors(tmp_path, make, words):
    with pytest.raises(ColorizeError, match=words):
        data.find_images(make(tmp_path))


def test_load_skips_undecodable_and_greyscale_and_reports_them(tmp_path, cache_dir):
    write_photos(tmp_path, 4)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(tmp_path / "grey.png"), np.tile(np.arange(48, dtype=np.uint8), (48, 1)))
    photoset = data.load_photoset(tmp_path, 32, cache_dir)
    assert len(photoset.names) == 4
    assert set(photoset.skipped) == {"broken.jpg", "grey.png"}
    assert "greyscale" in photoset.skipped["grey.png"]
    assert photoset.tiles.shape[1:] == (36, 36, 3) and photoset.tiles.dtype == np.uint8


def test_too_few_colour_photos_is_an_error(tmp_path, cache_dir):
    write_photos(tmp_path, 2)
    with pytest.raises(ColorizeError, match="usable colour photo"):
        data.load_photoset(tmp_path, 32, cache_dir)


def test_cache_is_reused_and_invalidated_by_changes(tmp_path, cache_dir):
    write_photos(tmp_path, 3)
    first = data.load_photoset(tmp_path, 32, cache_dir)
    cached = list(cache_dir.glob(f"photos-{first.fingerprint}.npz"))
    assert len(cached) == 1
    again = data.load_photoset(tmp_path, 32, cache_dir)
    assert np.array_equal(first.tiles, again.tiles) and again.fingerprint == first.fingerprint
    write_photos(tmp_path, 4, seed=5)  # rewrites files and adds one: a new key
    changed = data.load_photoset(tmp_path, 32, cache_dir)
    assert changed.fingerprint != first.fingerprint and len(changed.names) == 4


def test_tiles_follow_the_long_side():
    wide = np.zeros((100, 150, 3), np.uint8)
    tiles = data.tile_photo(wide, 40)
    assert len(tiles) == 2 and all(t.shape == (40, 40, 3) for t in tiles)
    assert len(data.tile_photo(np.zeros((5, 7, 3), np.uint8), 40)) == 1  # upscaled tiny photo


def test_sample_set_is_built_in(cache_dir):
    photoset = data.load_photoset("sample", 64, cache_dir)
    assert len(photoset.names) == 30 and photoset.tiles.shape == (30, 72, 72, 3)
    assert not photoset.skipped


@pytest.mark.parametrize("count", [3, 7, 20, 101])
def test_split_is_deterministic_disjoint_and_70_15_15(count):
    split = data.split_photos(count, seed=3)
    again = data.split_photos(count, seed=3)
    parts = [split.train, split.val, split.test]
    assert all(np.array_equal(a, b) for a, b in zip(parts, [again.train, again.val, again.test], strict=False))
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(count))  # disjoint and complete
    assert all(len(p) >= 1 for p in parts)
    if count >= 20:
        assert abs(len(split.test) - 0.15 * count) <= 1 and abs(len(split.val) - 0.15 * count) <= 1
    assert not np.array_equal(data.split_photos(count, seed=4).test, split.test) or count == 3


def test_split_needs_three_photos():
    with pytest.raises(ColorizeError):
        data.split_photos(2)


def test_kfold_holds_out_each_photo_exactly_once():
    indices = np.arange(3, 20)
    folds = data.kfold(indices, 4, seed=1)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == indices.tolist()
    for train, heldout in folds:
        assert not set(train) & set(heldout)
        assert sorted(np.concatenate([train, heldout]).tolist()) == indices.tolist()
    with pytest.raises(ColorizeError, match="k >= 2"):
        data.kfold(indices, 1)
    with pytest.raises(ColorizeError, match="cannot make"):
        data.kfold(indices[:3], 4)


def test_dataset_yields_cropped_normalised_pairs(tiny_rgb_batch):
    tiles = np.concatenate([tiny_rgb_batch] * 2)
    train = data.make_dataset(tiles, 16, 3, seed=0, training=True)
    l_norm, ab = next(iter(train))
    assert l_norm.shape == (3, 16, 16, 1) and ab.shape == (3, 16, 16, 2)
    assert float(np.abs(ab).max()) < 1 and -0.5 <= float(np.min(l_norm)) <= float(np.max(l_norm)) <= 0.5
    evaluation = list(data.make_dataset(tiles, 16, 3, seed=0, training=False))
    assert sum(len(b[0]) for b in evaluation) == len(tiles)  # every tile once, no repeat
