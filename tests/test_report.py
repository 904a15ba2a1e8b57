"""colorize.report: the one-page HTML report written from a finished run's output folder."""

from __future__ import annotations

import shutil

import pytest

from colorize.config import TrainConfig
from colorize.presets import ConfigSource
from colorize.report import write_report


@pytest.fixture
def run_folder(tiny_artifact, tmp_path):
    """A copy of the output folder `colorize fit` wrote for the tiny artifact."""
    return shutil.copytree(tiny_artifact.parent, tmp_path / "run")


@pytest.mark.slow
def test_report_from_tuning(run_folder, tiny_config):
    source = ConfigSource(
        tiny_config, "tuning", "runs/tune-<x>",
        best={"trial_id": "abc123", "ssim_mean": 0.7, "ssim_std": 0.01, "psnr_mean": 22.0,
              "epochs": 2, "data": "sample"},
        leaderboard=[{"trial_id": "abc123", "ssim_mean": "0.7"}, {"trial_id": "def456", "ssim_mean": "0.6"}],
    )
    page = write_report(run_folder, source).read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "abc123" in page and "def456" in page and "0.7000 ± 0.0100" in page
    assert "runs/tune-&lt;x&gt;" in page  # escaped
    assert "grey prediction" in page and "Test split" in page
    assert page.count("data:image/png;base64,") == 4  # loss, SSIM, PSNR curves and results
    assert str(run_folder) not in page  # no absolute paths: the page works when moved
    for field in tiny_config.to_dict():
        assert f"<td>{field}</td>" in page


@pytest.mark.slow
def test_report_without_tuning_or_figures(run_folder, tiny_config):
    (run_folder / "results.png").unlink()
    page = write_report(run_folder, ConfigSource(TrainConfig(epochs=2), "defaults")).read_text()
    assert "defaults with command-line overrides" in page
    assert "(results.png missing)" in page


@pytest.mark.slow
def test_report_names_the_preset(run_folder, tiny_config):
    page = write_report(run_folder, ConfigSource(tiny_config, "preset", "photos")).read_text()
    assert "the preset <code>photos</code>" in page
