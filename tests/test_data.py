"""colorize/data.py: discovery, skipping, tiling, cache, splits, k-fold and tf.data."""

import re

import cv2
import numpy as np
import pytest

from colorize import data
from colorize.errors import ColorizeError
from tests.conftest import make_photo, write_photos


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


def test_symbolic_links_are_followed_and_each_real_file_counted_once(tmp_path, caplog):
    store = write_photos(tmp_path / "store", 3)
    linked = tmp_path / "data"
    (linked / "own").mkdir(parents=True)
    write_photos(linked / "own", 1, seed=9)
    (linked / "photos").symlink_to(store)  # a linked-in dataset folder
    (linked / "again").symlink_to(store)  # the same folder linked twice
    (linked / "own" / "one.png").symlink_to(store / "photo_000.png")  # a linked file
    with caplog.at_level("INFO", logger="colorize.data"):
        files = data.find_images(linked)
    relative = sorted(p.relative_to(linked).as_posix() for p in files)
    # 3 photos in the store (once, under the first path), 1 of the folder's own
    assert relative == ["again/photo_000.png", "again/photo_001.png", "again/photo_002.png",
                        "own/photo_000.png"]
    assert f"4 image file(s) in {linked} (again 3, own 1)" in caplog.text


def test_hidden_files_and_folders_are_skipped(tmp_path):
    write_photos(tmp_path / "a", 2)
    write_photos(tmp_path / ".thumbnails", 2)
    (tmp_path / "a" / ".hidden.png").write_bytes((tmp_path / "a" / "photo_000.png").read_bytes())
    names = [p.relative_to(tmp_path).as_posix() for p in data.find_images(tmp_path)]
    assert names == ["a/photo_000.png", "a/photo_001.png"]


def test_a_link_loop_is_refused_in_one_clear_line(tmp_path):
    write_photos(tmp_path / "a", 1)
    (tmp_path / "a" / "up").symlink_to(tmp_path)  # leads back to an ancestor
    with pytest.raises(ColorizeError, match="symbolic link loop: .*up leads back to") as caught:
        data.find_images(tmp_path)
    assert "\n" not in str(caught.value)
    other = tmp_path.parent / (tmp_path.name + "-cycle")
    write_photos(other, 1)
    (other / "x").symlink_to(other / "y")
    (other / "y").symlink_to(other / "x")  # links pointing at each other never resolve
    with pytest.raises(ColorizeError, match="never resolves"):
        data.find_images(other)


def test_a_dangling_link_is_skipped(tmp_path):
    write_photos(tmp_path, 1)
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    assert [p.name for p in data.find_images(tmp_path)] == ["photo_000.png"]


def test_several_folders_keep_names_unique_and_files_once(tmp_path):
    first, second = write_photos(tmp_path / "x" / "train", 2), write_photos(tmp_path / "x" / "val", 2)
    photos = data.photos_from([first, second])
    assert [p.name for p in photos] == ["train/photo_000.png", "train/photo_001.png",
                                        "val/photo_000.png", "val/photo_001.png"]
    # same folder names: as many trailing parts as make them distinct
    other = write_photos(tmp_path / "y" / "train", 1)
    assert [p.name for p in data.photos_from(f"{first},{other}")] == [
        "x/train/photo_000.png", "x/train/photo_001.png", "y/train/photo_000.png"]
    # a file reachable through two of the folders is taken once
    assert len(data.photos_from([tmp_path / "x", first])) == 4
    assert [p.name for p in data.photos_from([first, "sample"])][-1].startswith("sample/")
    with pytest.raises(ColorizeError, match="same folder twice"):
        data.photos_from([first, first])


def test_data_sources_accept_lists_and_comma_lists(tmp_path):
    odd = tmp_path / "a,b"
    odd.mkdir()
    assert data.data_sources("sample") == ["sample"]
    assert data.data_sources("p, q") == ["p", "q"]
    assert data.data_sources(["p", "q,r"]) == ["p", "q", "r"]
    assert data.data_sources(str(odd)) == [str(odd)]  # an existing path is never split
    assert data.normalize_source(["p"]) == "p" and data.normalize_source("p,q") == ["p", "q"]
    with pytest.raises(ColorizeError, match="empty"):
        data.data_sources(" , ")


def test_several_folders_load_together_with_their_own_cache_key(tmp_path, cache_dir):
    first, second = write_photos(tmp_path / "a", 3), write_photos(tmp_path / "b", 3, seed=1)
    both = data.load_photoset([first, second], 32, cache_dir)
    alone = data.load_photoset(first, 32, cache_dir)
    assert len(both.names) == 6 and len(set(both.names)) == 6
    assert both.fingerprint != alone.fingerprint
    assert data.load_photoset([first, second], 32, cache_dir).names == both.names  # from cache


def test_cli_data_option_repeats_and_splits_commas():
    from colorize.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["fit", "--data", "a", "--data", "b,c", "--out", "o"])
    assert args.data == ["a", "b", "c"]
    assert parser.parse_args(["fit", "--out", "o"]).data == "sample"
    assert parser.parse_args(["tune", "--name", "n"]).data is None


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


def test_sample_set_is_built_in_and_split_by_source_photo(cache_dir):
    from colorize.config import TrainConfig
    from colorize.prepared_data import prepare_data

    photoset = data.load_photoset("sample", 64, cache_dir)
    assert len(photoset.names) == 6 and photoset.tiles.shape == (30, 72, 72, 3)
    assert sorted(np.bincount(photoset.owner).tolist()) == [4, 4, 4, 6, 6, 6]  # tiles per photo
    assert not photoset.skipped
    prepared = prepare_data("sample", TrainConfig(image_size=64), cache_dir)
    parts = {part: set(getattr(prepared.split, part).tolist()) for part in ("train", "val", "test")}
    # 6 photos: 4 train, 1 validation, 1 test; a photo's tiles all go to its split
    assert [len(parts[p]) for p in ("train", "val", "test")] == [4, 1, 1]
    tiles = sum(len(prepared.tiles(part)) for part in parts)
    assert tiles == 30 and not (parts["train"] & parts["test"])
    test_photo = prepared.photos("test")[0]
    assert test_photo.name in {"astronaut", "chelsea", "coffee", "rocket", "motorcycle_left",
                               "grace_hopper"}
    assert min(test_photo.load().shape[:2]) == 256  # evaluated as the whole photo


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
    l_norm, target = next(iter(train))
    assert l_norm.shape == (3, 16, 16, 1) and target.shape == (3, 16, 16, 3)
    ab = target[..., :2]
    assert np.array_equal(target[..., 2:], l_norm)  # the target carries L for the "rgb" loss
    assert float(np.abs(ab).max()) < 1 and -0.5 <= float(np.min(l_norm)) <= float(np.max(l_norm)) <= 0.5
    evaluation = list(data.make_dataset(tiles, 16, 3, seed=0, training=False))
    assert sum(len(b[0]) for b in evaluation) == len(tiles)  # every tile once, no repeat


def crop_slopes(tiles, zoom: float, count: int = 48) -> np.ndarray:
    """The horizontal L step per pixel of `count` training crops (tiles hold an L ramp)."""
    train = data.make_dataset(tiles, 16, count, seed=0, training=True, zoom=zoom)
    l_norm = next(iter(train))[0].numpy()[..., 0]
    centre = l_norm[:, 4:12, 4:12]  # away from any resampling at the borders
    return np.abs(np.diff(centre, axis=2)).mean(axis=(1, 2))


def test_zoom_sees_training_crops_at_random_scales_and_plain_crops_at_one():
    # A grey ramp along x: a crop's L step per pixel tells the scale it was seen at.
    ramp = np.tile(np.linspace(40, 215, 24)[None, :, None], (24, 1, 3)).astype(np.uint8)
    tiles = np.stack([ramp] * 4)
    plain = crop_slopes(tiles, 1.0)
    assert np.ptp(plain) < 0.1 * plain.mean()  # every plain crop at the tile's own scale
    zoomed = crop_slopes(tiles, 2.0)
    # Crops of side 8..24 resized to 16: steps from 1/2 to 3/2 of the plain one, and varied.
    assert zoomed.min() < 0.75 * plain.mean() and zoomed.max() > 1.2 * plain.mean()
    assert 0.45 * plain.mean() < zoomed.min() and zoomed.max() < 1.6 * plain.mean()


def test_a_separate_test_folder_leaves_the_split_85_15_and_is_what_test_reads(tmp_path, cache_dir):
    from colorize.config import TrainConfig
    from colorize.prepared_data import prepare_data

    train = write_photos(tmp_path / "train", 20)
    bench = write_photos(tmp_path / "bench", 3, seed=5, size=(40, 56))
    prepared = prepare_data(train, TrainConfig(image_size=32), cache_dir, test_source=bench)
    assert [len(prepared.split.train), len(prepared.split.val), len(prepared.split.test)] == [17, 3, 0]
    assert [p.load().shape[:2] for p in prepared.photos("test")] == [(40, 56)] * 3
    assert prepared.info()["photos"] == {"train": 17, "val": 3, "test": 3}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ColorizeError, match="empty"):
        prepare_data(train, TrainConfig(image_size=32), cache_dir, test_source=tmp_path / "empty")


def test_a_separate_validation_folder_is_the_val_split_and_never_trained_on(tmp_path, cache_dir):
    from colorize.config import TrainConfig
    from colorize.prepared_data import prepare_data

    train = write_photos(tmp_path / "train", 20)
    val = write_photos(tmp_path / "val", 4, seed=3, size=(40, 56))
    bench = write_photos(tmp_path / "bench", 3, seed=5)
    config = TrainConfig(image_size=32)
    prepared = prepare_data(train, config, cache_dir, test_source=bench, val_source=val)
    assert [len(prepared.split.train), len(prepared.split.val), len(prepared.split.test)] == [20, 4, 0]
    assert [p.path.parent for p in prepared.photos("val")] == [val] * 4
    assert {p.path.parent for p in prepared.photos("train")} == {train}
    assert prepared.info()["photos"] == {"train": 20, "val": 4, "test": 3}
    assert prepared.info()["val_source"] == str(val)
    # Without a test folder, --data gives the test photos too (85/15), validation stays --val-data.
    alone = prepare_data(train, config, cache_dir, val_source=val)
    assert [len(alone.split.train), len(alone.split.val), len(alone.split.test)] == [17, 4, 3]
    assert {p.path.parent for p in alone.photos("test")} == {train}


@pytest.mark.parametrize("held_out", ["same", "inside", "empty"])
@pytest.mark.parametrize("flag", ["val", "test"])
def test_a_held_out_folder_that_overlaps_the_training_data_or_is_empty_is_refused(
        tmp_path, cache_dir, held_out, flag):
    from colorize.config import TrainConfig
    from colorize.prepared_data import prepare_data

    train = write_photos(tmp_path / "train", 6)
    folder = {"same": lambda: train, "inside": lambda: write_photos(train / "held", 2, seed=4),
              "empty": lambda: tmp_path / "empty"}[held_out]()
    folder.mkdir(exist_ok=True)
    words = f"--{flag}-data {folder} overlaps --data {train}" if held_out != "empty" else "empty"
    with pytest.raises(ColorizeError, match=re.escape(words)):
        prepare_data(train, TrainConfig(image_size=32), cache_dir, **{f"{flag}_source": folder})
    # A test folder is not a validation folder either.
    if held_out == "same" and flag == "val":
        other = write_photos(tmp_path / "other", 3)
        with pytest.raises(ColorizeError, match="--test-data .* overlaps --val-data"):
            prepare_data(other, TrainConfig(image_size=32), cache_dir, val_source=train,
                         test_source=train)


def test_working_share_repeats_the_working_scale_tiles_and_keeps_every_other_once():
    scale = np.array([1] * 10 + [2] * 40, np.uint8)
    indices = np.arange(50)
    mixed = data.oversample_working_scale(indices, scale, 0.5)
    assert (scale[mixed] == 1).mean() == 0.5 and len(mixed) == 80
    assert sorted(mixed[scale[mixed] == 2].tolist()) == list(range(10, 50))  # each closer view once
    assert np.array_equal(data.oversample_working_scale(indices, scale, 0.0), indices)
    assert len(data.oversample_working_scale(indices, scale, 0.05)) == 50  # never fewer than they are
    only_working = np.arange(10)
    assert np.array_equal(data.oversample_working_scale(only_working, scale, 0.5), only_working)


def test_folder_balance_repeats_the_smaller_folders_toward_equal_shares():
    folder = np.array([0] * 10 + [1] * 40 + [2] * 160)
    indices = np.arange(len(folder))
    assert np.array_equal(data.balance_folders(indices, folder, 1.0), indices)  # shares by size
    alike = data.balance_folders(indices, folder, 0.0)
    assert np.bincount(folder[alike]).tolist() == [160, 160, 160]  # every folder alike
    between = data.balance_folders(indices, folder, 0.5)  # shares as sqrt(size): 1 : 2 : 4
    assert np.bincount(folder[between]).tolist() == [40, 80, 160]
    assert sorted(set(between.tolist())) == indices.tolist()  # every tile kept, the largest once
    assert np.array_equal(np.sort(between[folder[between] == 2]), np.arange(50, 210))


def test_each_photo_keeps_the_folder_it_came_from_through_the_cache(tmp_path, cache_dir):
    """The folder is stored with the photo, not parsed back from its name: a folder whose
    label is a prefix of another's ('train' holding 'val/') still counts as its own."""
    rng = np.random.default_rng(3)
    folders = [tmp_path / "bsds500" / "train", tmp_path / "bsds500" / "val", tmp_path / "imagenet"]
    for number, folder in enumerate(folders):
        (folder / "val").mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(folder / ("val" if i else ".") / f"p{number}{i}.png"), make_photo(rng, 40, 48))
    sources = [str(f) for f in folders]
    photos = data.photos_from(sources)
    assert {(p.name, p.folder) for p in photos} >= {("train/p00.png", 0), ("train/val/p01.png", 0),
                                                    ("val/val/p11.png", 1), ("imagenet/p20.png", 2)}
    for _ in range(2):  # decoded, then read back from the cache
        photoset = data.load_photoset(sources, 32, cache_dir)
        assert photoset.folders().tolist() == [0, 0, 1, 1, 2, 2]
    assert data.load_photoset(sources[0], 32, cache_dir, min_photos=2).folders().tolist() == [0, 0]


def test_folder_balance_evens_the_training_folders_and_never_changes_validation(tmp_path, cache_dir):
    from colorize.config import TrainConfig
    from colorize.prepared_data import prepare_data

    small, large = write_photos(tmp_path / "small", 6), write_photos(tmp_path / "large", 24, seed=1)
    as_loaded = prepare_data([small, large], TrainConfig(image_size=32), cache_dir)
    balanced = prepare_data([small, large], TrainConfig(image_size=32, folder_balance=0.0), cache_dir)
    assert np.array_equal(balanced.split.train, as_loaded.split.train)  # the same photos train
    folder = balanced.tile_folders()
    in_train = balanced.photoset.mask_of(balanced.split.train, all_views=True)
    few, many = np.bincount(folder[in_train])  # training tiles from each folder
    assert few < many / 2
    plain, evened = as_loaded.tiles("train"), balanced.tiles("train")
    assert len(plain) == few + many and len(evened) == few * round(many / few) + many
    assert np.array_equal(balanced.tiles("val"), as_loaded.tiles("val"))
    assert prepare_data(small, TrainConfig(image_size=32, folder_balance=0.0), cache_dir).tile_folders() is None


def test_training_tiles_follow_working_share_and_validation_never_changes(tmp_path, cache_dir):
    from colorize.config import TrainConfig
    from colorize.prepared_data import prepare_data

    photos = write_photos(tmp_path / "p", 10, size=(96, 128))  # big enough for views at 2x
    as_cut = prepare_data(photos, TrainConfig(image_size=16, depth=2, views=2), cache_dir)
    shared = prepare_data(photos, TrainConfig(image_size=16, depth=2, views=2, working_share=0.6),
                          cache_dir)
    scale, train = as_cut.photoset.scale, as_cut.photoset.mask_of(as_cut.split.train, all_views=True)
    natural = (scale[train] == 1).mean()
    assert natural < 0.3  # the closer views outnumber the working scale
    # Training tiles: every closer view once, the working scale repeated to about 60 %.
    working = shared.photoset.tiles_of(shared.split.train)  # working scale only
    mixed = shared.tiles("train")
    share = np.mean([any(np.array_equal(t, w) for w in working) for t in mixed])
    assert 0.5 < share < 0.7 and len(mixed) > len(as_cut.tiles("train"))
    assert np.array_equal(shared.tiles("val"), as_cut.tiles("val"))
