"""Where a training configuration comes from: a tuning experiment folder, a file, or flags.

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
