"""The search space: which TrainConfig fields are searched, over which values, as data.

A space is a plain dict, read from YAML or JSON, that maps a searchable field to either
a list of choices or a range:

    batch_size: [8, 16, 32, 64]                      # a list: one of these
    loss: [mse, ssim, mse+ssim]
    learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # a float range
    depth: {low: 2, high: 4}                         # ints on both ends: an int range, inclusive
    head: [regression, bins]                         # colour: the head, its decoding and
    temperature: {low: 0.2, high: 0.6}               #   rebalancing, and model selection
    monitor: [ssim, colour]
    encoder: [none, efficientnet-lite0]              # the ImageNet-pretrained encoder, and
    encoder_lr_scale: [0.1, 1.0]                     #   its share of the learning rate

A file's entries are merged over the default space (batch size, and the loss where the
base configuration's head is the regression head; the learning rate in its place around the
bins head, which has its own loss); names outside
SEARCHABLE, empty lists, malformed ranges and values that clash with each other (a trial
would refuse them together: `lr_decay` under the cosine schedule, `rebalance` with loss
`ssim` on the regression head) are errors, raised before any trial starts; values that only work against each other
(`rebalance` with `monitor: psnr`) are noted (`cautions`), not refused.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from colorize.config import LOSSES, TrainConfig
from colorize.errors import ColorizeError

DEFAULT_SPACE: dict[str, Any] = {
    "batch_size": [8, 16, 32, 64],
    "loss": list(LOSSES),
}

# Fields a search may vary; the rest (image size, views, working_share and folder_balance, which shape the
# shared tiles and folds, seed, ...) are fixed by CLI options.
SEARCHABLE = (
    "batch_size", "loss", "learning_rate", "lr_decay", "base_filters", "depth", "dropout", "ssim_weight",
    "head", "temperature", "rebalance", "monitor", "colour_floor", "global_context", "ema", "clip_norm",
    "zoom", "output_stride", "lr_schedule", "encoder", "encoder_lr_scale",
    "encoder_head",
)

# Every combination of the candidate values is checked when the space has at most this
# many (a TrainConfig costs microseconds); a larger one, a seeded sample of as many.
MAX_COMBINATIONS = 4096


# Around the bins head the loss is not searched: the learning rate takes its place, a range
# around the seed's 0.001, so that a few trials do not repeat one configuration (batch
# size alone has four).
BINS_LEARNING_RATE: dict[str, Any] = {"low": 3.0e-4, "high": 3.0e-3, "log": True}


def default_space(base: TrainConfig | None = None) -> dict[str, Any]:
    """DEFAULT_SPACE for a search around `base`: on the bins head, which trains with its
    cross-entropy whatever `loss` says (trials would repeat each other), the learning rate
    instead of the loss."""
    space = dict(DEFAULT_SPACE)
    if base is not None and base.head == "bins":
        space.pop("loss")
        space["learning_rate"] = dict(BINS_LEARNING_RATE)
    return space


def load_space(source: str | Path | dict | None, base: TrainConfig | None = None) -> dict[str, Any]:
    """The default space around `base` with the entries of `source` (a YAML/JSON file or a
    dict) merged over it; a `source` that searches the head keeps the default loss."""
    if source is None:
        return default_space(base)
    entries = source if isinstance(source, dict) else _read_file(Path(source))
    if not entries:
        raise ColorizeError(f"search space {source} is empty (give at least one parameter)")
    space = dict(DEFAULT_SPACE) if "head" in entries else default_space(base)
    space.update(entries)
    return space


def _read_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ColorizeError(f"search space file not found: {path}") from None
    try:
        values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ColorizeError(f"search space file {path} is not valid: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ColorizeError(f"search space file {path} must map parameter names to values")
    return values


def validate_space(space: dict[str, Any], base: TrainConfig) -> None:
    """Raise ColorizeError naming the first problem: unknown name, empty or bad values."""
    unknown = sorted(set(space) - set(SEARCHABLE))
    if unknown:
        raise ColorizeError(
            f"unknown search parameter(s): {', '.join(unknown)} "
            f"(searchable: {', '.join(SEARCHABLE)}; fix the others with CLI options)"
        )
    for name, values in space.items():
        if isinstance(values, list):
            if not values:
                raise ColorizeError(f"search parameter {name!r} has an empty list of choices")
            for value in values:  # TrainConfig checks each value (unknown loss, bad depth, ...)
                TrainConfig.from_dict({name: value}, base)
        elif isinstance(values, dict):
            _check_range(name, values, base)
        else:
            raise ColorizeError(
                f"search parameter {name!r} must be a list of choices or {{low: .., high: ..}}, "
                f"got {values!r}"
            )
    _check_combinations(space, base)


def _check_combinations(space: dict[str, Any], base: TrainConfig) -> None:
    """Raise ColorizeError naming the fewest searched values that TrainConfig refuses
    together: otherwise the trials that draw them fail at their start, each retried."""
    for values in _combinations(space):
        if _refusal(values, base) is None:
            continue
        values = _fewest(values, lambda fewer: _refusal(fewer, base) is not None)
        reason = (_refusal(values, base) or "").removeprefix("invalid configuration: ")
        raise ColorizeError(f"search values {_named(values)} cannot go together ({reason}); "
                            "narrow a list so that every combination is valid")


def cautions(space: dict[str, Any], base: TrainConfig) -> list[str]:
    """The cautions (`TrainConfig.cautions`) that searched values draw and the base
    configuration does not, each with the fewest values that draw it: said once before the
    search, since a trial's own would only reach its worker's log. Call after validate_space."""
    said, found = set(base.cautions()), []
    for values in _combinations(space):
        for caution in TrainConfig.from_dict(values, base).cautions():
            if caution in said:
                continue
            said.add(caution)

            def draws(fewer: dict[str, Any], caution: str = caution) -> bool:
                return caution in TrainConfig.from_dict(fewer, base).cautions()

            found.append(f"trials that draw {_named(_fewest(values, draws))}: {caution}")
    return found


def _combinations(space: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Every combination of the candidate values (a range's two ends), or a seeded sample
    of MAX_COMBINATIONS of them where there are more."""
    names = list(space)
    candidates = [values_of(space, name) for name in names]
    combinations: Iterable[Sequence[Any]]
    if math.prod(map(len, candidates)) <= MAX_COMBINATIONS:
        combinations = itertools.product(*candidates)
    else:
        rng = random.Random(0)
        combinations = ([rng.choice(c) for c in candidates] for _ in range(MAX_COMBINATIONS))
    return (dict(zip(names, combination, strict=True)) for combination in combinations)


def _fewest(values: dict[str, Any], still: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """`values` less each value that `still` holds without."""
    for name in list(values):
        fewer = {k: v for k, v in values.items() if k != name}
        if still(fewer):
            values = fewer
    return values


def _named(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _refusal(values: dict[str, Any], base: TrainConfig) -> str | None:
    try:
        TrainConfig.from_dict(values, base)
    except ColorizeError as exc:
        return str(exc)
    return None


def _check_range(name: str, spec: dict, base: TrainConfig) -> None:
    extra = sorted(set(spec) - {"low", "high", "log"})
    if extra or "low" not in spec or "high" not in spec:
        raise ColorizeError(
            f"search range {name!r} needs exactly low and high (and optionally log), got {spec!r}"
        )
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ColorizeError(f"search range {name!r} needs numbers, got low={low!r} high={high!r}")
    if low >= high:
        raise ColorizeError(f"search range {name!r} needs low < high, got {low} and {high}")
    if spec.get("log") and low <= 0:
        raise ColorizeError(f"search range {name!r} is logarithmic, so low must be positive")
    ints = isinstance(low, int) and isinstance(high, int)
    for value in range(low, high + 1) if ints and high - low <= 64 else (low, high):
        TrainConfig.from_dict({name: value}, base)  # e.g. every depth must divide image_size


def values_of(space: dict[str, Any], name: str) -> list:
    """The candidate values of a list parameter, or both ends of a range."""
    values = space[name]
    return list(values) if isinstance(values, list) else [values["low"], values["high"]]


def to_tune(space: dict[str, Any]) -> dict[str, Any]:
    """The space as Ray Tune domains (OptunaSearch turns them into Optuna distributions)."""
    from ray import tune

    domains = {}
    for name, values in space.items():
        if isinstance(values, list):
            domains[name] = tune.choice(values)
        elif all(isinstance(values[k], int) for k in ("low", "high")):
            sample = tune.lograndint if values.get("log") else tune.randint
            domains[name] = sample(values["low"], values["high"] + 1)  # upper end exclusive
        else:
            sample = tune.loguniform if values.get("log") else tune.uniform
            domains[name] = sample(float(values["low"]), float(values["high"]))
    return domains


def contains(space: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether `params` (a trial's searched values) lie in `space`."""
    for name, values in space.items():
        value = params.get(name)
        if isinstance(values, list):
            if value not in values:
                return False
        elif value is None or not values["low"] <= value <= values["high"]:
            return False
    return True
