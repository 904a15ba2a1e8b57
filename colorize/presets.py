"""Named training configurations, and the rule that picks one from the data.

`--config` takes a preset's name or a JSON file. Without it, `colorize fit` and `colorize train`
choose by the number of photos they are given (`auto`): a real folder of photos gets the
recipe chosen on real photos, a handful (the built-in sample, a test's tiny folder) gets the
seed's small model, which stops early in minutes where the recipe would spend its whole
budget memorising six photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from colorize.config import TrainConfig

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
# levels end at stride 32, so crops are larger (128 px: a 144 px working side, where an
# ImageNet network still recognises what it sees), and a decoder half as wide keeps the
# step's cost near the recipe's; the encoder steps at a tenth of the rate, as pretrained
# networks are fine-tuned, so the fresh decoder's large early steps do not wash out what
# it learnt on ImageNet.
PRETRAINED: dict[str, Any] = {
    **PHOTOS,
    "encoder": "efficientnet-lite0",
    "encoder_lr_scale": 0.1,
    "depth": 5,
    "base_filters": 16,
    "image_size": 128,
}

PRESETS = {"seed": SEED, "photos": PHOTOS, "pretrained": PRETRAINED}
AUTO = "auto"
# The recipe was chosen on a real photo set (docs/experiments.md); below this many, the seed's model.
PHOTOS_AT_LEAST = 200


def choose(photo_count: int) -> str:
    """The preset `auto` means for this many photos (training and validation together)."""
    return "photos" if photo_count >= PHOTOS_AT_LEAST else "seed"


def why(name: str, photo_count: int, max_minutes: float | None = None) -> str:
    """One line on what `auto` chose, and how to choose otherwise. `max_minutes` is the
    run's budget after the command line's flags (default: the preset's own)."""
    if name == "photos":
        minutes = PHOTOS["max_minutes"] if max_minutes is None else max_minutes
        budget = f"a {minutes:g}-minute budget ends the run" if minutes else "no time budget"
        return (f"configuration: the 'photos' recipe for {photo_count:,} photos (at least "
                f"{PHOTOS_AT_LEAST}; {budget}); --config seed for the seed's small model")
    return (f"configuration: the seed's small model for {photo_count:,} photo(s) (the 'photos' "
            f"recipe needs at least {PHOTOS_AT_LEAST}); --config photos to use it anyway")


def load(spec: str | Path) -> TrainConfig:
    """A preset by name, or a JSON file (a file is read only when no preset has the name)."""
    name = str(spec)
    if name in PRESETS:
        return TrainConfig.from_dict(PRESETS[name])
    if name == AUTO:
        raise ValueError("'auto' depends on the data: resolve it with choose() first")
    return TrainConfig.from_file(spec)
