"""Helpers shared by the benchmarks: the machine line and the location of the shared photos."""

from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def machine() -> str:
    """One line naming the CPU, its cores and the memory, printed by every benchmark."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "? GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {usable} usable of {os.cpu_count()} logical cores, {memory}, "
            f"Python {platform.python_version()}, load average {load:.1f} at start")


def require_shared_data() -> Path:
    if not (SHARED_DATA / "bsds500").is_dir():
        raise SystemExit(f"the real photos are expected at {SHARED_DATA} (bsds500/, imagenet-sample/)")
    return SHARED_DATA
