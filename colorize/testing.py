"""Test hooks, the only ones in product code: failures on demand, inert unless a test sets
their environment variable. Product code calls `worker_callbacks`, `worker_env` and
`trial_fail_once`; nothing else reads these variables.

- COLORIZE_TEST_FAIL_ONCE_AT_EPOCH=N (+ COLORIZE_TEST_FAIL_MARKER=FILE): the last Ray Train
  worker raises once at the end of epoch N, after that epoch's checkpoint is reported
  (tests/test_distributed.py: the worker group restarts from it).
- COLORIZE_TEST_FAIL_ONCE=FILE: when FILE exists, the first Tune trial to finish an epoch
  removes it and raises (tests/test_tune.py: the trial is retried from its checkpoint).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FAIL_AT_ENV = "COLORIZE_TEST_FAIL_ONCE_AT_EPOCH"
FAIL_MARKER_ENV = "COLORIZE_TEST_FAIL_MARKER"  # makes the worker failure happen only once
FAIL_ONCE_ENV = "COLORIZE_TEST_FAIL_ONCE"


def worker_env() -> dict[str, str]:
    """The hooks' variables set on the driver, to pass on to the Ray Train workers."""
    return {k: os.environ[k] for k in (FAIL_AT_ENV, FAIL_MARKER_ENV) if k in os.environ}


def worker_callbacks(rank: int, world: int) -> list:
    """[FailOnce] for the last worker when FAIL_AT_ENV is set, else []."""
    if not os.environ.get(FAIL_AT_ENV):
        return []
    return [_fail_once_callback(int(os.environ[FAIL_AT_ENV]), rank == world - 1)]


def _fail_once_callback(at_epoch: int, is_victim: bool):
    import keras

    class FailOnce(keras.callbacks.Callback):
        """One worker raises once, after a report."""

        def __init__(self):
            super().__init__()
            self.marker = Path(os.environ.get(FAIL_MARKER_ENV)
                               or Path(tempfile.gettempdir()) / "colorize-fail-once")

        def on_epoch_end(self, epoch, logs=None):
            if is_victim and epoch + 1 == at_epoch and not self.marker.exists():
                self.marker.write_text(str(epoch + 1))
                raise RuntimeError(f"test hook: worker failing once at epoch {epoch + 1}")

    return FailOnce()


def trial_fail_once() -> None:
    """Raise once, in the first trial to get here, when FAIL_ONCE_ENV names a file."""
    marker = os.environ.get(FAIL_ONCE_ENV)
    if not marker:
        return
    try:
        os.remove(marker)  # atomic: exactly one trial consumes the marker
    except FileNotFoundError:
        return
    raise RuntimeError(f"test hook {FAIL_ONCE_ENV}: failing this trial once")
