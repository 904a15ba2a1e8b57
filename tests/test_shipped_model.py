"""colorize/models/: the model that ships with the package, found by name by predict, evaluate,
serve and `fit --init`, small, beating grey on its record, and its card true to that record."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, write_photos

from colorize.artifact import SHIPPED_DIR, model_dir, read_metadata

CARD = SHIPPED_DIR / "MODEL_CARD.md"


def colorize(*args, cwd, timeout=420) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "colorize.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_name_means_the_shipped_model_unless_a_folder_has_it(tmp_path, monkeypatch):
    assert model_dir("pretrained") == SHIPPED_DIR / "pretrained"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrained").mkdir()
    assert model_dir("pretrained").resolve() == tmp_path / "pretrained"  # the user's folder wins
    assert str(model_dir("elsewhere")) == "elsewhere"


def test_it_is_small_beats_grey_and_its_card_says_its_scores():
    metadata = read_metadata("pretrained")
    size_mb = (SHIPPED_DIR / "pretrained" / "model.keras").stat().st_size / 2**20
    assert size_mb <= 40, f"the shipped model is {size_mb:.0f} MB; every version stays in the history"
    test = metadata["metrics"]["test"]
    assert test["beats_grey"] == {"psnr": True, "ssim": True}
    assert metadata["config"]["encoder"] == "efficientnet-lite0"
    row = re.search(r"\| this model \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", CARD.read_text())
    assert row, "MODEL_CARD.md has no scores row"
    recorded = [test["model"]["psnr"], test["model"]["ssim"], test["model"]["colourfulness"]]
    for shown, value in zip(row.groups(), recorded, strict=True):  # as rounded on the card
        step = 10.0 ** -len(shown.split(".")[1])
        assert abs(float(shown) - value) <= step, f"MODEL_CARD.md says {shown}, metadata.json {value}"
    assert str(test["images"]) in CARD.read_text().replace(",", "")


def test_its_cards_retrain_command_trains_its_configuration(tmp_path):
    """The card's one command, run today on folders laid out as it says, resolves to the
    shipped model's own configuration: a recipe default that moves on (crop size, colour
    calibration, the encoder's learning rate) must not silently change what it retrains."""
    import colorize.cli
    from colorize.cli.options import config_source
    from colorize.config import TrainConfig

    block = re.search(r"```bash\n(.*?)```", CARD.read_text(), re.S)
    assert block, "MODEL_CARD.md has no retrain command"
    setup, command = block.group(1).replace("\\\n", " ").split(";", 1)
    assert setup.strip() == "D=../shared/data"
    data = tmp_path / "data"  # 200 photos, enough for `fit` to choose the recipe as on the real folders
    for folder, count in [("bsds500/train", 120), ("bsds500/val", 40), ("imagenet-sample", 40), ("bsds500/test", 2)]:
        write_photos(data / folder, count, size=(8, 8))
    argv = command.replace("$D", str(data)).split()
    assert argv[:2] == ["colorize", "fit"]
    args = colorize.cli.build_parser().parse_args(argv[1:])
    resolved = config_source(args, args.data, say=lambda line: None).config.to_dict()
    shipped = TrainConfig.from_dict(read_metadata("pretrained")["config"]).to_dict()
    differ = {key: (resolved[key], shipped[key]) for key in shipped if resolved[key] != shipped[key]}
    assert not differ, f"the card's command trains (its value, the shipped model's): {differ}"


def test_the_wheel_carries_it():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"colorize.models" = ["*.md", "*/model.keras", "*/metadata.json"]' in text


@pytest.mark.slow
def test_predict_pretrained_colours_a_photo_with_no_training(tmp_path):
    photos = write_photos(tmp_path / "in", 2, size=(96, 128))
    run = colorize("predict", "pretrained", photos, "--out", tmp_path / "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    outputs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outputs) == 2
    rgb = cv2.imread(str(outputs[0]))
    assert rgb.shape == (96, 128, 3)
    lab = cv2.cvtColor(rgb, cv2.COLOR_BGR2LAB).astype(np.float32)
    assert np.abs(lab[..., 1:] - 128).mean() > 1.0, "the shipped model gave a grey photo"


@pytest.mark.slow
def test_fit_init_fine_tunes_the_shipped_model(tmp_path, cache_dir):
    photos = write_photos(tmp_path / "photos", 12, size=(160, 160))
    out = tmp_path / "mine"
    run = colorize("fit", "--init", "pretrained", "--data", photos, "--out", out, "--epochs", "1",
                   "--steps-per-epoch", "2", "--max-minutes", "0", "--batch-size", "4",
                   "--cache", cache_dir, "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "starting from the weights of pretrained" in run.stderr
    config = json.loads((out / "model" / "metadata.json").read_text())["config"]
    assert config["encoder"] == "efficientnet-lite0" and config["depth"] == 5
    source = json.loads((out / "source.json").read_text()) if (out / "source.json").exists() else None
    assert source is None or source["kind"] == "model"

    refused = colorize("fit", "--init", "pretrained", "--config", "seed", "--data", photos,
                       "--out", tmp_path / "other", "--epochs", "1", "--cache", cache_dir,
                       "--quiet", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("colorize: error: --init pretrained: that model's network differs")
    assert "Traceback" not in refused.stderr
