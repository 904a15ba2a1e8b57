"""Live progress for long commands: a bar on a terminal, plain periodic lines everywhere else.

On a terminal (stderr is a TTY) `Progress` draws a tqdm bar that redraws in place; in a
pipe, a log file or a Ray job's log it prints one line every `interval_s` seconds and a
last one at the end, so logs stay readable and `colorize submit --follow` shows them too.
`eta()` formats an estimate of the time left.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def eta(seconds: float) -> str:
    """'45s', '12m05s', '3h20m': a time left, coarse enough to read at a glance."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class Progress:
    """Counts work done out of `total`; `update(n, **fields)` after each piece of it."""

    def __init__(self, total: int, label: str, unit: str = "img", stream: TextIO | None = None,
                 interval_s: float = 10.0, tty: bool | None = None):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.done = 0
        self.fields: dict[str, object] = {}
        self.started = self.last_line = time.monotonic()
        use_bar = self.stream.isatty() if tty is None else tty
        self.bar = None
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit, file=self.stream, leave=True,
                            dynamic_ncols=True)

    def update(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields.update(fields)
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)
            self.bar.update(n)
        elif time.monotonic() - self.last_line >= self.interval_s:
            self._line()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done:
            self._line()

    def _line(self) -> None:
        self.last_line = now = time.monotonic()
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        extra = "".join(f", {k} {v}" for k, v in self.fields.items())
        percent = 100 * self.done / max(self.total, 1)
        print(f"{self.label}: {self.done}/{self.total} {self.unit} ({percent:.0f}%), "
              f"{rate:.1f} {self.unit}/s, {eta(left)} left{extra}", file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quality_table(result: dict) -> str:
    """The test or evaluation figures: model, grey prediction and ground truth."""
    model, grey = result["model"], result["grey"]
    lines = [
        f"{'':14}{'PSNR (dB)':>10}{'SSIM':>8}{'colourful':>11}",
        f"{'model':14}{model['psnr']:>10.2f}{model['ssim']:>8.4f}{model['colourfulness']:>11.1f}",
        f"{'grey':14}{grey['psnr']:>10.2f}{grey['ssim']:>8.4f}{grey['colourfulness']:>11.1f}",
        f"{'ground truth':14}{'':>10}{'':>8}{result['truth']['colourfulness']:>11.1f}",
        f"({result['images']} images)",
    ]
    return "\n".join(lines)
