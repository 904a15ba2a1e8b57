"""The one exception type users see: a message that names the problem and the fix.

The CLI prints it as one line and exits with its `exit_code`: 2 when the error is about
how the command was called (`usage`: a bad option value, a bad combination of options, a
missing required option, as argparse itself exits), 1 for everything that went wrong
running it (a file not found, a cluster that does not answer, training that failed).
Serve answers it as a 4xx/5xx JSON body (`status`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

USAGE_EXIT = 2  # what argparse exits with on bad usage
RUNTIME_EXIT = 1


class ColorizeError(Exception):
    """A user-facing error: bad input, bad option, missing file. Never a bug."""

    def __init__(self, message: str, status: int = 400, usage: bool = False):
        super().__init__(message)
        self.status = status  # HTTP status when raised behind the Serve endpoint
        self.usage = usage  # about the command line itself (exit 2), not about running it

    @property
    def exit_code(self) -> int:
        return USAGE_EXIT if self.usage else RUNTIME_EXIT


class UsageError(ColorizeError):
    """A ColorizeError about the options the user gave: the CLI exits 2."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message, status, usage=True)


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Around code that only checks or converts the user's options (TrainConfig from the
    flags, Serve settings, ...): a ColorizeError raised inside is a usage error (exit 2)."""
    try:
        yield
    except ColorizeError as exc:
        exc.usage = True
        raise
