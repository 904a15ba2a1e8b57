"""A small Python client for the colorization endpoint (`colorize serve`, serve/app.py).

    from colorize.client import Client

    client = Client("http://127.0.0.1:8000/")            # what `colorize serve` prints
    rgb = client.colorize("photo.jpg")                   # a file -> RGB uint8 array (H, W, 3)
    client.colorize(grey_array, strength=1.5, out="colour.png")   # an array -> a file
    png = client.colorize_bytes(open("photo.jpg", "rb").read())   # bytes -> PNG bytes

An image is a file path, the encoded bytes of an image (any format the server reads) or a
numpy array (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16, sent as a
lossless PNG. The answer is the colorized image at the input's size: an RGB uint8 array
(RGBA when the input had alpha, which the server keeps), or, with `out=`, written to that
file (in the format its suffix names) and its path returned.

A 503 (the server is stopping, or a model replica failed twice) and a refused or dropped
connection are retried `retries` times, waiting `backoff_s`, then twice that, and so on,
or as long as the server's `Retry-After` asks (never more than `max_backoff_s`); every other 4xx
or 5xx answer raises `ColorizeError` at once, its message the server's one-line JSON error
and its `status` the HTTP status; no answer within `timeout` seconds raises it with status
504. The API key (`api_key=`, else `$COLORIZE_API_KEY`) goes in the `X-API-Key` header.
Only the standard library talks HTTP (urllib); Pillow encodes arrays and decodes answers.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from colorize.errors import ColorizeError

API_KEY_ENV = "COLORIZE_API_KEY"  # as colorize.serve.settings (not imported: it needs Ray)
API_KEY_HEADER = "X-API-Key"
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
DEFAULT_URL = "http://127.0.0.1:8000/"
# A connection that failed before an answer came: nothing was colorized, so send it again.
CONNECTION_ERRORS = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)

Image = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray


class Client:
    """The endpoint at `url` (its base URL, e.g. 'http://127.0.0.1:8000/')."""

    def __init__(self, url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float = 60.0, retries: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0):
        base = url if url.endswith("/") else url + "/"
        if base.endswith("/colorize/"):  # the /colorize URL itself is fine too
            base = base[:-len("colorize/")]
        self.url = base
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        if timeout <= 0 or retries < 0 or backoff_s < 0:
            raise ColorizeError("timeout must be positive, retries and backoff_s not negative")
        self.timeout, self.retries = timeout, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # A loopback endpoint is never reached through an HTTP proxy from the environment.
        handlers = [urllib.request.ProxyHandler({})] if _loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)

    def colorize(self, image: Image, *, strength: float = 1.0, out: str | os.PathLike | None = None,
                 format: str | None = None) -> np.ndarray | Path:
        """The colorized image as an RGB uint8 array, or written to `out` (its path)."""
        if out is not None:
            out = Path(out)
            fmt = format or FORMATS.get(out.suffix.lower())
            if fmt is None:
                raise ColorizeError(f"cannot tell the format of {out.name}: name it .png, .jpg "
                                    "or .webp, or pass format=")
            data = self.colorize_bytes(image, strength=strength, format=fmt)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            return out
        return decode(self.colorize_bytes(image, strength=strength, format=format or "png"))

    def colorize_bytes(self, image: Image, *, strength: float = 1.0, format: str = "png") -> bytes:
        """The server's encoded answer (PNG, JPEG or WebP bytes) for `image`."""
        query = urllib.parse.urlencode({"format": format, "strength": f"{float(strength):g}"})
        body = image_bytes(image)
        answer, _ = self._request("POST", f"colorize?{query}", body,
                                  {"Content-Type": "application/octet-stream"})
        return answer

    def health(self) -> dict[str, Any]:
        """GET /healthz: {"status": "ok" (or "stopping"), "api_key_required": ...}."""
        return json.loads(self._request("GET", "healthz")[0])

    def model(self) -> dict[str, Any]:
        """GET /model: the artifact's metadata and metrics, and the serving settings."""
        return json.loads(self._request("GET", "model")[0])

    def stats(self) -> dict[str, Any]:
        """GET /stats: one model replica's batch sizes and time per stage."""
        return json.loads(self._request("GET", "stats")[0])

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
        headers = dict(headers or {})
        if self.api_key:
            headers[API_KEY_HEADER] = self.api_key
        url = self.url + path
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            request = urllib.request.Request(url, data=body, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return response.read(), dict(response.headers)
            except urllib.error.HTTPError as exc:
                status, text = exc.code, exc.read()
                if status != 503 or last:
                    raise ColorizeError(_server_message(status, text, url), status) from None
                self._wait(attempt, exc.headers.get("Retry-After"))
            except TimeoutError as exc:
                raise _timeout(url, self.timeout) from exc
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, TimeoutError):
                    raise _timeout(url, self.timeout) from exc
                if not isinstance(reason, (*CONNECTION_ERRORS, OSError)) or last:
                    raise ColorizeError(f"cannot reach {url}: {reason}", 503) from None
                self._wait(attempt)
            except CONNECTION_ERRORS as exc:
                if last:
                    raise ColorizeError(f"{url} dropped the connection: {exc or type(exc).__name__}",
                                        503) from None
                self._wait(attempt)
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, retry_after: str | None = None) -> None:
        delay = self.backoff_s * 2 ** attempt
        if retry_after and retry_after.strip().isdigit():
            delay = float(retry_after)
        time.sleep(min(self.max_backoff_s, delay))


def colorize(image: Image, url: str = DEFAULT_URL, **options: Any) -> np.ndarray | Path:
    """One call: `Client(url).colorize(image, **options)` (strength, out, format, and the
    Client's api_key, timeout, retries)."""
    client_options = {k: options.pop(k) for k in ("api_key", "timeout", "retries", "backoff_s",
                                                  "max_backoff_s") if k in options}
    return Client(url, **client_options).colorize(image, **options)


def image_bytes(image: Image) -> bytes:
    """The bytes to send: a file's, the bytes themselves, or an array as a lossless PNG."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, np.ndarray):
        return _png(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ColorizeError(f"cannot read {path}: {exc.strerror or exc}") from None
    raise ColorizeError(f"an image is a file path, image bytes or a numpy array, not "
                        f"{type(image).__name__}")


def decode(data: bytes) -> np.ndarray:
    """An answer's bytes as an RGB (or RGBA) uint8 array."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as picture:
        mode = "RGBA" if "A" in picture.getbands() else "RGB"
        return np.asarray(picture.convert(mode))


def _png(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if not shape_ok or array.dtype not in (np.uint8, np.uint16) or 0 in array.shape:
        raise ColorizeError(f"an image array is (H, W), (H, W, 3) or (H, W, 4) of uint8 or "
                            f"uint16, not {array.shape} {array.dtype}")
    if array.dtype == np.uint16 and array.ndim == 3:  # Pillow writes 16 bits for grey only
        array = (array >> 8).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _server_message(status: int, text: bytes, url: str) -> str:
    """The server's one-line JSON error, or the start of whatever else answered."""
    try:
        error = json.loads(text)["error"]
        if isinstance(error, str):
            return error
    except (ValueError, KeyError, TypeError):
        pass
    shown = text[:200].decode("utf-8", "replace").strip().replace("\n", " ")
    return f"{url} answered HTTP {status}" + (f": {shown}" if shown else "")


def _timeout(url: str, seconds: float) -> ColorizeError:
    return ColorizeError(f"no answer from {url} within {seconds:g} s; "
                         "raise timeout= for large images or a busy server", 504)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
