"""The endpoint's settings: one frozen dataclass, validated once at start-up.

Built from keyword arguments (`colorize serve`, `colorize.serve.runner.start`) or from the `args`
mapping of `serve/config.yaml`; unknown keys are errors. The API key may come from the
environment (`COLORIZE_API_KEY`) so it never has to be written into a config file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colorize.errors import ColorizeError
from colorize.images import MAX_PIXELS
from colorize.precision import INFERENCE_PRECISIONS

API_KEY_ENV = "COLORIZE_API_KEY"
API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class Settings:
    """Every setting of the endpoint, each default stated here once: `colorize serve`'s
    flags are generated from these fields (help from the comments, colorize/cli/serve.py)
    and tests check serve/config.yaml against them."""

    model_dir: str  # the artifact folder written by `colorize fit` / `colorize train`
    max_batch_size: int = 16  # images per forward pass (serve/batching.py); 1 turns batching off
    batch_wait_timeout_s: float = 0.15  # longest wait for a batch to fill up to the last batch's size
    max_upload_bytes: int = 20 * 1024 * 1024  # request bodies above this get 413
    max_pixels: int = MAX_PIXELS  # refuse images with more pixels (read from the header) with 413
    api_key: str | None = None  # require this X-API-Key header on /colorize, /model and /stats
    min_replicas: int = 1  # equal min and max: a fixed number of model replicas
    max_replicas: int = 1  # larger than min: autoscaling between the two
    ingress_replicas: int = 1  # HTTP ingress replicas in front of the model replicas (hops=2; with hops=1 every model replica is an ingress)
    target_ongoing_requests: float = 0.0  # autoscaling target of requests per replica; 0 = the batch size
    cpus_per_replica: float = 1.0  # CPUs reserved for each model replica
    gpus_per_replica: float = 0.0  # GPUs (or a fraction of one) for each model replica
    hops: int = 2  # 2: an HTTP ingress in front of the model replicas, retrying a request whose replica died; 1: each model replica answers HTTP itself (less CPU a request, no retry)
    precision: str = "auto"  # model arithmetic: auto (bf16 where the CPU computes it natively) or float32
    host: str = "127.0.0.1"  # HTTP bind address; anything else must be asked for
    port: int = 8000  # HTTP port

    def __post_init__(self) -> None:
        problems = []
        if not self.model_dir:
            problems.append("model_dir is required (the folder written by 'colorize fit')")
        if self.max_batch_size < 1:
            problems.append("max_batch_size must be at least 1")
        if not 0 <= self.batch_wait_timeout_s <= 10:
            problems.append("batch_wait_timeout_s must be between 0 and 10 seconds")
        if self.max_upload_bytes < 1:
            problems.append("max_upload_bytes must be positive")
        if not 1 <= self.max_pixels <= MAX_PIXELS:
            problems.append(f"max_pixels must be between 1 and {MAX_PIXELS:,}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            problems.append("replicas: need 1 <= min_replicas <= max_replicas")
        if self.ingress_replicas < 1:
            problems.append("ingress_replicas must be at least 1")
        if self.target_ongoing_requests < 0:
            problems.append("target_ongoing_requests must not be negative")
        if self.cpus_per_replica < 0 or self.gpus_per_replica < 0:
            problems.append("cpus_per_replica and gpus_per_replica must not be negative")
        if self.hops not in (1, 2):
            problems.append(f"hops must be 1 or 2, not {self.hops}")
        if self.precision not in INFERENCE_PRECISIONS:
            problems.append(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}, not {self.precision!r}")
        if not 0 < self.port < 65536:
            problems.append(f"port must be in 1..65535, not {self.port}")
        if self.api_key == "":
            problems.append("api_key must not be empty (leave it unset for no key)")
        if problems:
            raise ColorizeError("invalid serve settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Settings:
        """Settings from a mapping (config.yaml `args`); unknown keys and bad types are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ColorizeError(
                f"unknown serve settings: {', '.join(unknown)}; known: {', '.join(fields)}"
            )
        typed = {name: _coerce(name, fields[name].type, v) for name, v in values.items()}
        if typed.get("api_key") is None and os.environ.get(API_KEY_ENV):
            typed["api_key"] = os.environ[API_KEY_ENV]
        if "model_dir" not in typed:
            raise ColorizeError("serve settings need model_dir (the folder written by 'colorize fit')")
        return cls(**typed)

    @property
    def autoscaling_target(self) -> float:
        """Ongoing requests per replica autoscaling aims at: one full batch unless set."""
        return self.target_ongoing_requests or float(self.max_batch_size)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's comment above: the help line of its `colorize serve` flag."""
        from colorize.config import field_comments

        return field_comments(cls)  # type: ignore[arg-type]  # a class is hashable; its instances are not

    def public(self) -> dict[str, Any]:
        """What /model may show: everything except the key itself."""
        values = dataclasses.asdict(self)
        values["api_key"] = "set" if self.api_key else None
        values["model_dir"] = str(Path(self.model_dir))
        return values


def parse_replicas(text: str) -> tuple[int, int]:
    """'2' -> (2, 2) fixed; '1-4' -> (1, 4) autoscaling."""
    try:
        low, _, high = str(text).partition("-")
        pair = (int(low), int(high or low))
    except ValueError:
        raise ColorizeError(f"--replicas wants N or MIN-MAX (e.g. 2 or 1-4), not {text!r}") from None
    if not 1 <= pair[0] <= pair[1]:
        raise ColorizeError(f"--replicas {text}: need 1 <= MIN <= MAX")
    return pair


def _coerce(name: str, kind: Any, value: Any) -> Any:
    kind = str(kind)
    if value is None and "None" in kind:
        return None
    try:
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ColorizeError(f"serve setting {name}: expected {kind}, got {value!r}") from None
