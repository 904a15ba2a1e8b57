"""Clean stops: the first Ctrl-C (SIGINT) or SIGTERM ends a long command, saying what it stops.

The `colorize` command installs one handler for both signals (`install`). Commands mark
what is running with `stage(what, after)`. On the first signal:

- if the running stage registered a graceful stop (`on_stop`: Ray Tune saving its
  experiment, Ray Train aborting its run), it is asked to stop and the command carries
  on until that returns; a second signal, or `GRACE_S` seconds without an end, stops it
  at once;
- otherwise `Stopped` (a KeyboardInterrupt) is raised in the main thread at once.

`colorize.cli.main` turns `Stopped` into one line (`colorize: stopped ...; <after>`), shuts
down the Ray instance the command started, and exits 128 + the signal: 130 for SIGINT,
143 for SIGTERM.

Ray installs handlers of its own: `ray.init` one for SIGTERM, Ray Train (v2) and Ray Tune
one for SIGINT, and none of them is put back afterwards, so after a training stage
Ctrl-C only "aborted" a run long finished. `keep_handlers()` wraps those calls and restores
the handlers that were there before.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Ray Tune also takes SIGUSR1 as "stop the experiment" and leaves its handler installed.
LIBRARY_SIGNALS = (*SIGNALS, *((signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()))
GRACE_S = 10.0  # a graceful stop gets this long before the command is stopped at once


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by a stop signal; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, what: str = "", after: str = ""):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.what, self.after = signum, what, after

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class _Stage:
    what: str  # "training into runs/x", said when stopping
    after: str  # where the work is and how to go on, said once stopped
    on_stop: Callable[[], bool] | None = None  # graceful stop; True when it was started


_stages: list[_Stage] = []
_first: int | None = None  # the first stop signal received, if any
_installed = False
_timer: threading.Timer | None = None  # the deadline of a graceful stop


def install() -> None:
    """Make SIGINT and SIGTERM stop the command cleanly (main thread of the CLI only)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    _installed = True


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """`install` for the duration of a command; the handlers before it are put back after."""
    global _installed
    with keep_handlers():
        install()
        try:
            yield
        finally:
            _installed = False
            reset()


def installed() -> bool:
    return _installed and signal.getsignal(signal.SIGINT) is _handle


def requested() -> int | None:
    """The stop signal received so far (SIGINT or SIGTERM), or None."""
    return _first


def reset() -> None:
    """Forget a received signal (tests)."""
    global _first
    _first = None
    _cancel_deadline()


def current_stage() -> _Stage | None:
    return _stages[-1] if _stages else None


@contextlib.contextmanager
def stage(what: str, after: str = "") -> Iterator[_Stage]:
    """Mark what runs now: it is named when a stop signal comes, and `after` once stopped.
    Set `.on_stop` on the yielded stage to stop gracefully instead of at once."""
    current = _Stage(what, after)
    _stages.append(current)
    try:
        yield current
    except Stopped as exc:
        exc.what, exc.after = exc.what or current.what, exc.after or current.after
        raise
    except KeyboardInterrupt:
        # Ray's blocking calls turn an exception raised by a signal handler into a plain
        # KeyboardInterrupt: give it back its signal and what was stopped.
        raise Stopped(_first or signal.SIGINT, current.what, current.after) from None
    finally:
        _stages.remove(current)


def stopped() -> Stopped:
    """The Stopped exception for the signal received (after a graceful stop has ended)."""
    _cancel_deadline()
    current = _stages[-1] if _stages else _Stage("", "")
    return Stopped(_first or signal.SIGINT, current.what, current.after)


@contextlib.contextmanager
def keep_handlers() -> Iterator[None]:
    """Around calls that install their own SIGINT/SIGTERM handlers (ray.init, Ray Train,
    Ray Tune): the handlers in place before are put back when the call returns or fails."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in LIBRARY_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


def _handle(signum: int, frame) -> None:
    global _first
    current = _stages[-1] if _stages else None
    if _first is None:
        _first = signum
        what = f" {current.what}" if current and current.what else ""
        if current is not None and current.on_stop is not None and current.on_stop():
            _say(f"stopping{what} (saving its state; Ctrl-C again stops at once)")
            _deadline(signum)
            return
        _say(f"stopping{what}")
    raise Stopped(_first, current.what if current else "", current.after if current else "")


def _deadline(signum: int) -> None:
    """If the graceful stop has not ended the command after GRACE_S, stop it at once."""
    global _timer
    _timer = threading.Timer(GRACE_S, _signal_main_thread, args=(signum,))
    _timer.daemon = True
    _timer.start()


def _signal_main_thread(signum: int) -> None:
    """Deliver `signum` to the main thread again (a real signal also cuts a blocking sleep)."""
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident or 0, signum)  # the main thread has one
    else:
        _thread.interrupt_main(signal.Signals(signum))


def _cancel_deadline() -> None:
    global _timer
    if _timer is not None:
        _timer.cancel()
        _timer = None


def _say(line: str) -> None:
    # os.write, not print: the signal may interrupt a print to the same stream.
    with contextlib.suppress(OSError):
        os.write(2, f"\ncolorize: {line}\n".encode())
