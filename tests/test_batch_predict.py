"""colorize/batch_predict.py and `colorize predict`: targets mirror the inputs, nothing is
overwritten without --overwrite, a rerun skips finished outputs, batches through
colorize_batch, failures counted alone, writes leave no partial files."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from colorize import batch_predict
from colorize.errors import ColorizeError
from tests.conftest import make_photo, write_photos


def write_image(path, height=40, width=56, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = make_photo(np.random.default_rng(seed), height, width)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


# --- planning (no model) ------------------------------------------------------------------


def test_same_named_inputs_in_two_folders_get_two_targets(tmp_path):
    first = write_image(tmp_path / "in" / "a" / "x.jpg")
    second = write_image(tmp_path / "in" / "b" / "x.jpg", seed=1)
    out = tmp_path / "out"
    expected = [(first, out / "a" / "x.png"), (second, out / "b" / "x.png")]
    assert batch_predict.plan([tmp_path / "in"], out) == expected  # one folder: its tree
    assert batch_predict.plan([first.parent, second.parent], out) == expected  # two folders
    assert batch_predict.plan([first, second], out) == expected  # two files
    assert batch_predict.plan([first], out) == [(first, out / "x.png")]


def test_same_stem_in_one_folder_is_refused_or_kept_apart(tmp_path):
    write_image(tmp_path / "in" / "x.jpg")
    write_image(tmp_path / "in" / "x.png", seed=1)
    with pytest.raises(ColorizeError, match="would both be written to .*x.png.*--keep-extension"):
        batch_predict.plan([tmp_path / "in"], tmp_path / "out")
    pairs = batch_predict.plan([tmp_path / "in"], tmp_path / "out", "webp", keep_extension=True)
    assert sorted(t.name for _, t in pairs) == ["x.jpg.webp", "x.png.webp"]


def test_outputs_inside_the_input_folder_are_never_read_as_inputs(tmp_path):
    photos = write_photos(tmp_path / "photos", 2)
    write_image(photos / "colour" / "photo_000.png")  # an earlier run's output
    pairs = batch_predict.plan([photos], photos / "colour")
    assert [s.name for s, _ in pairs] == ["photo_000.png", "photo_001.png"]
    with pytest.raises(ColorizeError, match="no images among the inputs"):
        batch_predict.plan([photos / "colour"], photos / "colour")  # would overwrite its sources


def test_existing_targets_are_pending_only_with_overwrite(tmp_path):
    pairs = batch_predict.plan([write_photos(tmp_path / "in", 3)], tmp_path / "out")
    pairs[0][1].parent.mkdir(parents=True)
    pairs[0][1].write_bytes(b"done before")
    todo, skipped = batch_predict.pending(pairs)
    assert todo == pairs[1:] and skipped == 1
    assert batch_predict.pending(pairs, overwrite=True) == (pairs, 0)


def test_missing_input_and_bad_format_are_clear_errors(tmp_path):
    with pytest.raises(ColorizeError, match="input not found"):
        batch_predict.plan([tmp_path / "nope.jpg"], tmp_path / "out")
    with pytest.raises(ColorizeError, match="unsupported output format"):
        batch_predict.plan([tmp_path], tmp_path / "out", "gif")


# --- colorizing (a tiny trained model) ----------------------------------------------------


@pytest.mark.slow
def test_a_batch_of_mixed_shapes_colorizes_each_and_a_bad_file_fails_alone(tiny_artifact, tmp_path):
    from colorize.artifact import load_artifact

    artifact = load_artifact(tiny_artifact)
    sources = [write_image(tmp_path / "in" / "wide.png", 40, 72),
               write_image(tmp_path / "in" / "tall.png", 64, 36, seed=2)]
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    pairs = batch_predict.plan([tmp_path / "in"], tmp_path / "out")
    outcomes = batch_predict.colorize_files(artifact, pairs, strength=0.0)
    status = {o.source.name: o.status for o in outcomes}
    assert status == {"broken.jpg": "failed", "tall.png": "done", "wide.png": "done"}
    for source in sources:
        result = cv2.imread(str(tmp_path / "out" / source.name))
        assert result.shape[:2] == cv2.imread(str(source)).shape[:2]
        # strength 0 is the grey prediction: the three channels agree
        assert np.abs(result.astype(int) - result[..., :1]).max() <= 1
    assert not list((tmp_path / "out").glob(".*partial"))  # no temporary file left


def run_predict(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "colorize.cli", "predict", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_predict_mirrors_skips_on_rerun_and_overwrites_only_when_asked(tiny_artifact, tmp_path):
    write_image(tmp_path / "in" / "a" / "x.jpg")
    write_image(tmp_path / "in" / "b" / "x.jpg", seed=1)
    write_image(tmp_path / "in" / "b" / "y.png", 30, 30, seed=2)
    out = tmp_path / "out"
    first = run_predict(tiny_artifact, tmp_path / "in" / "a", tmp_path / "in" / "b", "--out", out,
                        "--batch-size", 2, "--strength", 1.5)
    assert first.returncode == 0, first.stderr
    targets = [out / "a" / "x.png", out / "b" / "x.png", out / "b" / "y.png"]
    assert all(t.is_file() for t in targets)
    assert "done 3, skipped 0" in first.stdout
    assert "colorizing: 3/3 img (100%)" in first.stderr  # progress lines when not on a terminal
    stamps = [t.stat().st_mtime_ns for t in targets]

    again = run_predict(tiny_artifact, tmp_path / "in" / "a", tmp_path / "in" / "b", "--out", out)
    assert again.returncode == 0, again.stderr
    assert "done 0, skipped 3 already there" in again.stdout
    assert [t.stat().st_mtime_ns for t in targets] == stamps  # untouched

    redo = run_predict(tiny_artifact, tmp_path / "in", "--out", out, "--overwrite")
    assert redo.returncode == 0 and "done 3, skipped 0" in redo.stdout, redo.stderr
    assert all(t.stat().st_mtime_ns > s for t, s in zip(targets, stamps, strict=True))


@pytest.mark.slow
def test_predict_refuses_a_bad_strength_in_one_line(tiny_artifact, tmp_path):
    result = run_predict(tiny_artifact, write_image(tmp_path / "x.png"), "--out", tmp_path / "o",
                         "--strength", "5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "colorize: error: strength must be a number from 0 (grey) to 3, 1 being the model's "
        "calibrated colour; got 5.0"
    ]


@pytest.mark.slow
def test_predict_exits_1_when_any_image_failed_naming_it(tiny_artifact, tmp_path):
    """One image that cannot be read among good ones: the good ones are written, the
    summary counts the failure, and the command exits 1 with a line naming the failed file
    (exit 2 is for usage errors only)."""
    write_image(tmp_path / "in" / "a.png")
    write_image(tmp_path / "in" / "b.png", seed=1)
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    result = run_predict(tiny_artifact, tmp_path / "in", "--out", out)
    assert result.returncode == 1, result.stderr
    assert "done 2, skipped 0 already there, failed 1" in result.stdout
    assert (out / "a.png").is_file() and (out / "b.png").is_file()
    assert f"failed: {bad}: " in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"colorize: error: 1 image(s) could not be colorized: {bad} (see the `failed:` lines "
        "above; the others are done)")

    again = run_predict(tiny_artifact, tmp_path / "in", "--out", out)  # still failing: still 1
    assert again.returncode == 1 and "done 0, skipped 2 already there" in again.stdout


def test_failed_summary_names_the_first_few():
    from colorize.cli.local import FAILED_NAMED, _failed_summary

    counts = batch_predict.Counts(done=3, failed=FAILED_NAMED + 2)
    names = [f"/in/{i}.png" for i in range(FAILED_NAMED + 2)]
    line = _failed_summary(names, counts)
    assert line.startswith(f"{FAILED_NAMED + 2} image(s) could not be colorized: /in/0.png, ")
    assert f"/in/{FAILED_NAMED - 1}.png and 2 more" in line and f"/in/{FAILED_NAMED}.png" not in line
