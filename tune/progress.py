"""The live trial table of a search: trial, parameters, epoch, the ranked metric, status.

A Ray Tune callback (it runs in the driver, in Tune's loop) that redraws the table as
results come in. On a terminal it is redrawn in place at each trial event; elsewhere (a
pipe, a log file, a Ray job's logs) it is printed whenever results came in, at most every
`interval_s` seconds, and once more at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time

from ray import tune

from colorize.tune.results import COMPLETED, ERROR, STOPPED
from colorize.tune.trainable import DEFAULT_METRIC, column

LIVE_STATUS = {"PENDING": "pending", "RUNNING": "running", "PAUSED": "paused"}


class TrialTable(tune.Callback):
    """Prints the trial table to stdout (looked up at each print: the callback is pickled
    with the experiment, so `Tuner.restore` brings it back)."""

    metric = column(DEFAULT_METRIC)  # an experiment pickled before searches named their metric

    def __init__(self, params: list[str], max_epochs: int, scheduler: str, interval_s: float = 10.0,
                 metric: str = DEFAULT_METRIC):
        self.params, self.max_epochs, self.scheduler = params, max_epochs, scheduler
        self.metric = column(metric)  # the results column shown: ssim_mean, psnr_mean, ...
        self.interval_s = interval_s
        self._drawn = 0  # lines of the last table drawn on a terminal
        self._last_print: float | None = None  # monotonic time of the last print; None: never
        self._pending = False  # results came in since the last print
        self._ended: dict[str, str] = {}  # trial id -> "complete" or "error", as Tune said

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self._drawn, self._last_print, self._pending, self._ended = 0, None, False, {}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._show(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._show(trials)

    # Tune calls these before it changes the trial's status (e.g. when ASHA stops it).
    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended[trial.trial_id] = "complete"
        self._show(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended[trial.trial_id] = "error"
        self._show(trials, force=True)

    def on_experiment_end(self, trials, **info) -> None:
        if self._pending:
            self._show(trials, force=True)

    def _show(self, trials, force: bool = False) -> None:
        stream = sys.stdout
        self._pending = True
        tty = stream.isatty()
        # The first table prints at once: the monotonic clock starts near 0 at boot, so
        # "0 = never printed" would hold a fresh machine's first table back for interval_s.
        due = self._last_print is None or time.monotonic() - self._last_print >= self.interval_s
        if not (tty or force or due):
            return
        lines = self.table(trials)
        if tty and self._drawn:
            stream.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the table's first line, clear
        elif not tty:
            lines = [time.strftime("%H:%M:%S trials:"), *lines]
        stream.write("\n".join(lines) + "\n")
        stream.flush()
        self._drawn = len(lines) if tty else 0
        self._last_print, self._pending = time.monotonic(), False

    def table(self, trials) -> list[str]:
        """The table's lines: one row per trial, in the order Tune created them."""
        header = ["trial", *self.params, "epoch", self.metric, "status"]
        rows = [header]
        for trial in trials:
            last = trial.last_result or {}
            epoch = int(last.get("training_iteration") or 0)
            score = last.get(self.metric)
            rows.append([
                trial.trial_id, *(_fmt(trial.config.get(p)) for p in self.params),
                f"{epoch}/{self.max_epochs}", "-" if score is None else f"{score:.4f}",
                self._status(trial, epoch),
            ])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                for row in rows]

    def _status(self, trial, epoch: int) -> str:
        ended = self._ended.get(trial.trial_id)
        if trial.status == "ERROR" or ended == "error":
            return ERROR
        if trial.status in LIVE_STATUS and ended is None:
            return LIVE_STATUS[trial.status]
        if epoch >= self.max_epochs or self.scheduler != "asha":
            return COMPLETED
        return STOPPED


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
