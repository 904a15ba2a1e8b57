"""Which float policy training runs in: "auto" (TrainConfig's default) picks mixed_bfloat16
on CPUs that compute bf16 natively (AVX-512 BF16 or AMX), float32 elsewhere. Detected,
never assumed: a CPU without those instructions emulates bf16 and runs it several times
slower. A visible GPU keeps float32 (not measured here: no GPU to measure on).

Training a pretrained encoder (fine-tuning it) keeps float32 under "auto" on every CPU: the
backward pass of its depthwise convolutions runs slower in bf16 than in float32, on AMX as
on AVX-512 BF16, so the whole step is slower in bf16 (bench/README.md, *Model throughput*).
A frozen encoder skips that pass, and its inference still gains from bf16.

Artifacts are always saved in float32 (artifact.py), so this choice never reaches a replica.
"""

from __future__ import annotations

import functools
from pathlib import Path

INFERENCE_PRECISIONS = ("auto", "float32")  # what a loaded artifact predicts in (artifact.py)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU's flags (Linux's /proc/cpuinfo, or `cpuinfo` text) include a native
    bf16 instruction set; False where they cannot be read (macOS, Windows)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(set(line.split(":", 1)[-1].split()) & set(BF16_FLAGS))
    return False


@functools.cache
def _auto() -> str:
    return "mixed_bfloat16" if cpu_has_bf16() and not _gpu_visible() else "float32"


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve(precision: str) -> str:
    """The Keras dtype policy for a TrainConfig.precision ("auto" decided on this machine)."""
    return _auto() if precision == "auto" else precision


def training_policy(precision: str, fine_tunes_encoder: bool) -> str:
    """The Keras dtype policy a model trains in: `resolve`, except that "auto" keeps float32
    while a pretrained encoder is fine-tuned (see above). A policy named outright is kept."""
    return "float32" if precision == "auto" and fine_tunes_encoder else resolve(precision)
