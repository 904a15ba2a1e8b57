"""colorize/cli.py end to end through a subprocess: fit, evaluate, predict, and clear errors."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def run_cli(*args, env_extra=None, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "colorize.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_photos, cache_dir):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli("fit", "--data", tiny_photos, "--out", out, "--epochs", 2, "--image-size", 32,
                     "--depth", 2, "--base-filters", 8, "--batch-size", 4, "--cache", cache_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    return out, result


def test_fit_writes_everything_and_reports_against_grey(fitted):
    out, result = fitted
    assert "grey" in result.stdout and "PSNR" in result.stdout
    for path in ["model/model.keras", "model/metadata.json", "metrics.json", "history.json",
                 "results.png", "plots/loss.png", "plots/ssim.png", "plots/psnr.png",
                 "checkpoint/state.json"]:
        assert (out / path).is_file(), path
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"model", "grey", "truth"} <= set(metrics["test"]) and metrics["epochs"] == 2
    # the curves' reference level: the grey prediction on the same validation crops
    assert metrics["validation_grey"]["colourfulness"] < 1 < metrics["validation_grey"]["psnr"]
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))


def test_rerun_resumes_instead_of_starting_over(fitted, tiny_photos, cache_dir):
    out, _ = fitted
    result = run_cli("fit", "--data", tiny_photos, "--out", out, "--epochs", 3, "--image-size", 32,
                     "--depth", 2, "--base-filters", 8, "--batch-size", 4, "--cache", cache_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_evaluate_and_predict(fitted, tiny_photos, tmp_path):
    out, _ = fitted
    result = run_cli("evaluate", out / "model", "--data", tiny_photos, "--json", tmp_path / "e.json")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "e.json").read_text())["images"] == 20
    odd = tmp_path / "in" / "odd.png"
    odd.parent.mkdir()
    cv2.imwrite(str(odd), np.full((33, 17), 100, np.uint8))
    result = run_cli("predict", out / "model", odd.parent, "--out", tmp_path / "pred", "--format", "jpeg")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "pred" / "odd.jpeg")).shape == (33, 17, 3)


# Exit 2: the options themselves (a bad value, a bad combination); 1: running them failed
# (a folder or model that is not there).
@pytest.mark.parametrize("args, words, code", [
    (["fit", "--data", "/nonexistent/photos", "--out", "{tmp}/o"], "data folder not found", 1),
    (["fit", "--data", "{tmp}", "--out", "{tmp}/o"], "no images in", 1),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--loss", "l1"], "unknown loss", 2),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--image-size", "30"], "multiple of", 2),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--temperature", "0"], "temperature must be in (0, 1]", 2),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--head", "bins", "--views", "9"], "views must be 1..4", 2),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--zoom", "3"], "zoom must be in [1, 2]", 2),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--output-stride", "3"], "output_stride must be one of 1, 2, 4", 2),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--bins-stride", "3"], "output_stride must be one of", 2),  # its older name
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--working-share", "1"], "working_share must be in [0, 1)", 2),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--folder-balance", "-1"], "folder_balance must be in [0, 1]", 2),
    (["fit", "--data", "sample", "--val-data", "sample", "--out", "{tmp}/o"], "--val-data sample overlaps --data sample", 2),
    (["fit", "--data", "sample", "--val-data", "{tmp}/nowhere", "--out", "{tmp}/o"], "data folder not found", 1),
    (["evaluate", "{tmp}", "--data", "sample"], "not a colorize model", 1),
    (["predict", "{tmp}/nomodel", "{tmp}/x.png", "--out", "{tmp}/p"], "input not found", 1),
])
def test_bad_input_is_one_line_with_its_exit_code(tmp_path, capsys, args, words, code):
    from colorize.cli import main

    assert main([a.format(tmp=tmp_path) for a in args]) == code
    err = capsys.readouterr().err
    assert words in err and err.startswith("colorize: error: ")
    assert "Traceback" not in err and err.strip().count("\n") == 0, err


def test_whole_process_stderr_is_one_line(tmp_path):
    result = run_cli("fit", "--data", tmp_path / "missing", "--out", tmp_path / "o")
    assert result.returncode == 1  # a runtime error: the folder is not there
    assert result.stderr.strip().splitlines() == [
        f"colorize: error: data folder not found: {tmp_path / 'missing'} "
        "(give a folder of photos or 'sample')"
    ]


def test_undecodable_input_to_predict_is_skipped_with_a_message(fitted, tmp_path):
    out, _ = fitted
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    result = run_cli("predict", out / "model", bad, "--out", tmp_path / "p")
    assert result.returncode == 1 and "not a readable image" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"colorize: error: none of the 1 image(s) could be colorized: {bad} (see above)")
