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


class CpuUse:
    """Which processes used the CPU while a block ran: every process's CPU seconds, sampled
    every `interval` s and grouped by its title (Ray names its workers "ray::<Actor>.<method>").
    `busy(name)` keeps the samples in which the processes named `name` used at least `cores`
    cores (the training steps), and gives each group's mean cores over those samples: what
    else held the machine while they trained."""

    def __init__(self, interval: float = 0.5):
        import threading

        self.interval, self.samples = interval, []  # [(seconds, {group: cpu seconds})]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuUse:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @staticmethod
    def _totals() -> dict[int, tuple[str, float]]:
        import psutil

        totals = {}
        for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            times, cmdline = proc.info["cpu_times"], proc.info["cmdline"] or []
            if times is None:
                continue
            title = cmdline[0] if cmdline and cmdline[0].startswith("ray::") else proc.info["name"]
            totals[proc.pid] = (title.split(" ")[0][:40], times.user + times.system)
        return totals

    def _run(self) -> None:
        import time

        before, then = self._totals(), time.monotonic()
        while not self.stop.wait(self.interval):
            after, now = self._totals(), time.monotonic()
            used: dict[str, float] = {}
            for pid, (title, seconds) in after.items():
                used[title] = used.get(title, 0.0) + max(0.0, seconds - before.get(pid, (title, 0.0))[1])
            self.samples.append((now - then, used))
            before, then = after, now

    def busy(self, name: str, cores: float = 1.0) -> dict[str, float]:
        """{group: mean cores it used} over the samples where groups containing `name` used
        at least `cores` cores, most first."""
        kept = [(dt, used) for dt, used in self.samples
                if sum(v for k, v in used.items() if name in k) >= cores * dt]
        span = sum(dt for dt, _ in kept) or 1.0
        groups: dict[str, float] = {}
        for _, used in kept:
            for title, seconds in used.items():
                groups[title] = groups.get(title, 0.0) + seconds / span
        return dict(sorted(groups.items(), key=lambda kv: -kv[1]))
