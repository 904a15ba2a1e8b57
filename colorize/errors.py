"""The one exception type users see: a message that names the problem and the fix.

The CLI prints it as one line and exits with code 2; Serve answers it as a 4xx JSON body.
"""


class ColorizeError(Exception):
    """A user-facing error: bad input, bad option, missing file. Never a bug."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status  # HTTP status when raised behind the Serve endpoint
