"""Where a training configuration comes from: a named preset, a tuning experiment folder
or a file, and the rule that picks a preset from the data.

`--config` takes a preset's name or a JSON file. Without it, `colorize fit` and `colorize train`
choose by the number of photos they are given (`auto`): a real folder of photos gets the
recipe chosen on real photos, a handful (the built-in sample, a test's tiny folder) gets the
seed's small model, which stops early in minutes where the recipe would spend its whole
budget memorising six photos.

A tuning experiment folder (written by `colorize tune`) holds `best_config.json`
(`{"config": {...TrainConfig...}, "ssim_mean", "ssim_std", "psnr_mean", "trial_id",
"epochs", "data"}`) and `trials.csv` (one row per trial, best first). `ConfigSource`
keeps the configuration with a description of its origin, for the report.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colorize.config import TrainConfig
from colorize.errors import ColorizeError

# The seed's model: TrainConfig's own defaults (a 3-level U-Net, MSE, early stopping on SSIM).
SEED: dict[str, Any] = {}

# The real-photo recipe: a larger U-Net with whole-image context, closer training views at
# random scales, the rebuilt photo's error, a decaying learning rate, a moving average of the
# weights, and a 55-minute budget that ends the run. Why each choice, with the runs that
# decided it: docs/experiments.md ("Colour").
# It selects on PSNR: validation SSIM peaks within the first epochs, so the seed's rule would
# keep an early, greyer model.
# Width: 32 base filters train more epochs in the budget than 48 and score as well; their
# rawer colour needs a smaller colour budget. 64 fall behind within the budget.
# Schedule: half a cosine over the budget's minutes, so the rate ends with the budget however
# many epochs the CPU fits in it (a per-epoch decay tuned on a fast CPU would still be high
# when the budget ends on a slow one).
# Folders: a share of the training samples as the square root of each --data folder's size
# (folder_balance 0.5), so a small benchmark folder is not drowned by a large general one.
# With one folder it changes nothing.
PHOTOS: dict[str, Any] = {
    "loss": "rgb",
    "depth": 4,
    "base_filters": 32,
    "views": 2,
    "zoom": 1.25,
    "folder_balance": 0.5,
    "global_context": True,
    "lr_schedule": "cosine",
    "ema": 0.998,
    "steps_per_epoch": 200,
    "patience": 100,
    "monitor": "psnr",
    "max_minutes": 55,
    "precision": "auto",
    "colour_budget_db": 0.15,
}

# The recipe on the ImageNet-pretrained encoder (efficientnet_lite.py): the photos recipe's
# training, with EfficientNet-Lite0 in place of the encoder learnt from scratch. Its five
# levels end at stride 32, so crops are larger (192 px: a 216 px working side, near the
# 224 px an ImageNet network was trained to recognise at; 128 px crops scored lower on the
# same seed, docs/experiments.md, "192 px crops"), and a decoder half as wide. The encoder
# is fine-tuned at a tenth of the decoder's rate, its BatchNorm statistics kept: its backward
# pass makes the step dearer, so fewer epochs fit the budget, but under this head and crop
# size it scored above the frozen encoder on each seed tried (docs/experiments.md, "the
# encoder fine-tuned under the 192 px recipe"; frozen, `--encoder-lr-scale 0`, it had won
# under the regression head at 128 px).
# Head: a/b classes at a quarter of the resolution (Zhang et al.'s): a distribution over
# colours keeps an object's colour where a regression's mean greys it, and the coarse
# softmax makes the step cheaper than the full-resolution regression head's, so more epochs
# fit the budget (docs/experiments.md, "bins head at a quarter").
# Colour: calibrated to a share of the validation truth's colourfulness rather than a
# budget in dB. The seeds' validation splits price colour differently, so one budget gave
# each seed a different colour; a share of the truth gives every run about the same
# (docs/experiments.md, "a colour target for the pretrained recipe"). The share is the one
# the colourfulness target asks of the test photos' truth; a little less (0.65) left one
# seed short of it in float32 (docs/experiments.md, "a colour target of 0.67").
PRETRAINED: dict[str, Any] = {
    **PHOTOS,
    "encoder": "efficientnet-lite0",
    "encoder_lr_scale": 0.1,
    "depth": 5,
    "base_filters": 16,
    "image_size": 192,
    "head": "bins",
    "output_stride": 4,
    "colour_budget_db": 0.0,
    "colour_target": 0.67,
}

PRESETS = {"seed": SEED, "photos": PHOTOS, "pretrained": PRETRAINED}
AUTO = "auto"
# The recipes were chosen on a real photo set (docs/experiments.md); below this many, the seed's model.
PHOTOS_AT_LEAST = 200
RECIPE = "pretrained"  # what `auto` trains on a real folder: the recipe on the pretrained encoder


def choose(photo_count: int) -> str:
    """The preset `auto` means for this many photos (training and validation together)."""
    return RECIPE if photo_count >= PHOTOS_AT_LEAST else "seed"


def why(name: str, photo_count: int, max_minutes: float | None = None) -> str:
    """One line on what `auto` chose, and how to choose otherwise. `max_minutes` is the
    run's budget after the command line's flags (default: the preset's own)."""
    if name != "seed":
        minutes = PRESETS[name]["max_minutes"] if max_minutes is None else max_minutes
        budget = f"a {minutes:g}-minute budget ends the run" if minutes else "no time budget"
        return (f"configuration: the {name!r} recipe for {photo_count:,} photos (at least "
                f"{PHOTOS_AT_LEAST}; {budget}); --config photos for the recipe without the "
                "ImageNet encoder, --config seed for the seed's small model")
    return (f"configuration: the seed's small model for {photo_count:,} photo(s) (the {RECIPE!r} "
            f"recipe needs at least {PHOTOS_AT_LEAST}); --config {RECIPE} to use it anyway")


def load(spec: str | Path) -> TrainConfig:
    """A preset by name, or a JSON file (a file is read only when no preset has the name)."""
    name = str(spec)
    if name in PRESETS:
        return TrainConfig.from_dict(PRESETS[name])
    if name == AUTO:
        raise ValueError("'auto' depends on the data: resolve it with choose() first")
    return TrainConfig.from_file(spec)


# --- configurations from a tuning experiment -------------------------------------------

BEST_CONFIG, TRIALS = "best_config.json", "trials.csv"
LEADERBOARD_ROWS = 5  # trials shown in the report


@dataclass(frozen=True)
class ConfigSource:
    """A configuration and where it came from (shown at the top of the report)."""

    config: TrainConfig
    kind: str  # "tuning", "preset", "file" or "defaults"
    path: str = ""  # experiment folder or config file
    best: dict[str, Any] = field(default_factory=dict)  # best_config.json without "config"
    leaderboard: list[dict[str, str]] = field(default_factory=list)  # top rows of trials.csv

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "path": self.path, "best": self.best,
            "leaderboard": self.leaderboard, "config": self.config.to_dict(),
        }


def load_experiment(folder: str | Path) -> ConfigSource:
    """The best configuration of a tuning experiment folder, with its leaderboard."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ColorizeError(
            f"experiment folder not found: {folder} (give the --out folder of `colorize tune`)"
        )
    best_file = folder / BEST_CONFIG
    if not best_file.is_file():
        raise ColorizeError(
            f"no {BEST_CONFIG} in {folder}: the tuning run has not finished a trial yet "
            "(run or resume `colorize tune`, or pass --config FILE)"
        )
    config = TrainConfig.from_file(best_file)
    best = json.loads(best_file.read_text())
    best.pop("config", None)
    return ConfigSource(config, "tuning", str(folder), best, read_leaderboard(folder / TRIALS))


def read_leaderboard(path: Path, rows: int = LEADERBOARD_ROWS) -> list[dict[str, str]]:
    """The first `rows` rows of trials.csv (already best first); [] when it is absent."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [dict(row) for _, row in zip(range(rows), csv.DictReader(handle), strict=False)]
