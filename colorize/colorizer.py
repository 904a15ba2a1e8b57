"""Moved into colorize/inference.py (the colour strength and colorize_batch).

A compatibility path only, for the modules that still import it here (serve/app.py,
cli/local.py and some tests); it goes once they import colorize.inference.
"""

from colorize.inference import (
    MAX_STRENGTH,
    check_strength,
    colorize_batch,
    colorize_batch_strengths,
    colorize_image,
)

__all__ = ["MAX_STRENGTH", "check_strength", "colorize_batch", "colorize_batch_strengths", "colorize_image"]
