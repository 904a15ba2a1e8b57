"""Moved into colorize/presets.py (ConfigSource, load_experiment, read_leaderboard).

A compatibility path only, for the modules that still import it here (distributed.py,
pipeline.py, cli/options.py, cli/train.py and some tests); it goes once they import
colorize.presets.
"""

from colorize.presets import (
    BEST_CONFIG,
    LEADERBOARD_ROWS,
    TRIALS,
    ConfigSource,
    load_experiment,
    read_leaderboard,
)

__all__ = ["BEST_CONFIG", "LEADERBOARD_ROWS", "TRIALS", "ConfigSource", "load_experiment", "read_leaderboard"]
