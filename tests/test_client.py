"""colorize.client: against a scripted HTTP server on 127.0.0.1 (retries on 503 and on
dropped connections with backoff, no retry on a 4xx, the server's one-line error, timeouts,
the API key header, every kind of input), and against the real Serve app (a file, bytes
and arrays colorized as the in-process colorizer does, strength, `out=`, a 415)."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from test_serve import decoded, photo, png_bytes, server  # noqa: F401 (server: a fixture)

from colorize.client import Client, colorize, image_bytes
from colorize.errors import ColorizeError


class Scripted:
    """A server on 127.0.0.1 that answers the n-th request with `script[n]` (the last one
    from then on): an int status with a JSON error, 200 echoing the body, "drop" (close
    without answering) or ("sleep", seconds). It records each request."""

    def __init__(self, script: list):
        self.script, self.requests = script, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append({"path": self.path, "headers": self.headers,  # any case
                                       "body": body, "at": time.monotonic()})
                step = outer.script[min(len(outer.requests), len(outer.script)) - 1]
                if step == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = 200
                if step == 200:
                    payload = body or json.dumps({"status": "ok"}).encode()
                    kind = "image/png" if body else "application/json"
                    self._answer(200, payload, kind)
                else:
                    error = {"error": f"scripted {step}: try again later", "status": step}
                    self._answer(step, json.dumps(error).encode(), "application/json")

            def _answer(self, status, payload, kind):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_503_twice_then_200_is_retried_with_backoff():
    rgb = photo(12, 20)
    with Scripted([503, 503, 200]) as fake:
        result = Client(fake.url, backoff_s=0.05, retries=3).colorize(rgb)
    assert np.array_equal(result, rgb)  # the echo of the PNG it sent: lossless
    assert len(fake.requests) == 3
    gaps = np.diff([r["at"] for r in fake.requests])
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps  # 0.05 s, then twice that
    assert fake.requests[0]["path"].startswith("/colorize?format=png&strength=1")


def test_503_past_the_retries_and_a_4xx_raise_the_servers_one_line_error():
    with Scripted([503]) as fake:
        with pytest.raises(ColorizeError) as caught:
            Client(fake.url, backoff_s=0.01, retries=2).colorize_bytes(b"x")
    assert caught.value.status == 503 and str(caught.value) == "scripted 503: try again later"
    assert len(fake.requests) == 3  # the first try and 2 retries
    for status in (400, 401, 413, 415, 422, 500):
        with Scripted([status, 200]) as fake:
            with pytest.raises(ColorizeError) as caught:
                Client(fake.url, backoff_s=0.01).colorize_bytes(b"x")
        assert caught.value.status == status and "\n" not in str(caught.value)
        assert str(caught.value) == f"scripted {status}: try again later"
        assert len(fake.requests) == 1  # never retried


def test_a_dropped_connection_is_retried_and_a_closed_port_is_one_error():
    with Scripted(["drop", 200]) as fake:
        assert Client(fake.url, backoff_s=0.01).colorize_bytes(b"abc") == b"abc"
    assert len(fake.requests) == 2
    with Scripted([200]) as fake:
        url = fake.url
    started = time.monotonic()
    with pytest.raises(ColorizeError, match="cannot reach") as caught:
        Client(url, retries=2, backoff_s=0.05).health()  # the port is closed now
    assert caught.value.status == 503 and time.monotonic() - started >= 0.15


def test_no_answer_within_the_timeout_is_a_504_line():
    with Scripted([("sleep", 2)]) as fake:
        with pytest.raises(ColorizeError, match="within 0.3 s") as caught:
            Client(fake.url, timeout=0.3).colorize_bytes(b"x")
    assert caught.value.status == 504


def test_strength_format_api_key_and_urls(monkeypatch, tmp_path):
    with Scripted([200]) as fake:
        Client(fake.url + "colorize", api_key="k1").colorize_bytes(b"x", strength=2.5, format="jpeg")
        monkeypatch.setenv("COLORIZE_API_KEY", "k2")
        assert Client(fake.url.rstrip("/")).health() == {"status": "ok"}
    first, second = fake.requests
    assert first["path"] == "/colorize?format=jpeg&strength=2.5"
    assert first["headers"].get("X-API-Key") == "k1" and second["headers"].get("x-api-key") == "k2"
    assert second["path"] == "/healthz"


@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba", "grey16", "path", "bytes", "out"])
def test_every_kind_of_input_and_output(kind, tmp_path):
    rgb = photo(10, 14)
    arrays = {"grey": rgb[..., 0], "rgb": rgb, "rgba": np.dstack([rgb, rgb[..., :1]]),
              "grey16": rgb[..., 0].astype(np.uint16) * 257}
    with Scripted([200]) as fake:
        client = Client(fake.url)
        if kind in arrays:
            sent = arrays[kind]
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(image_bytes(sent)))), sent)
            answer = client.colorize(sent)
            expected = {"grey": np.dstack([sent] * 3), "grey16": None}.get(kind, sent)
            if expected is not None:
                assert np.array_equal(answer, expected)
        elif kind == "path":
            (tmp_path / "in.png").write_bytes(png_bytes(rgb))
            assert np.array_equal(client.colorize(tmp_path / "in.png"), rgb)
            assert np.array_equal(colorize(str(tmp_path / "in.png"), fake.url, retries=0), rgb)
        elif kind == "bytes":
            assert np.array_equal(client.colorize(png_bytes(rgb)), rgb)
        else:
            written = client.colorize(png_bytes(rgb), out=tmp_path / "sub" / "out.png")
            assert written == tmp_path / "sub" / "out.png" and np.array_equal(decoded(written.read_bytes()), rgb)
            assert "format=png" in fake.requests[-1]["path"]
            with pytest.raises(ColorizeError, match="format"):
                client.colorize(png_bytes(rgb), out=tmp_path / "out.gif")


def test_bad_inputs_are_one_line_before_any_request(tmp_path):
    with Scripted([200]) as fake:
        client = Client(fake.url)
        for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.float32),
                    np.zeros((0, 4), np.uint8), 42, tmp_path / "missing.png"):
            with pytest.raises(ColorizeError):
                client.colorize(bad)
    assert fake.requests == []


@pytest.mark.slow
def test_against_the_real_serve_app(server, tiny_artifact, tmp_path):  # noqa: F811
    from colorize.artifact import load_artifact
    from colorize.inference import colorize_image

    artifact = load_artifact(tiny_artifact)
    client = Client(str(server.base_url), timeout=60)
    assert client.health()["status"] == "ok"
    assert client.model()["config"]["image_size"] == 32
    rgb = photo(40, 56, seed=7)
    expected = colorize_image(artifact, rgb)
    (tmp_path / "photo.png").write_bytes(png_bytes(rgb))
    for image in (rgb, png_bytes(rgb), tmp_path / "photo.png"):
        result = client.colorize(image)
        assert result.shape == (40, 56, 3) and result.dtype == np.uint8
        assert np.abs(result.astype(int) - expected.astype(int)).max() <= 2
    grey = client.colorize(rgb, strength=0)
    assert np.abs(grey[..., 0].astype(int) - grey[..., 2].astype(int)).max() <= 1  # no colour
    written = client.colorize(rgb, strength=1.5, out=tmp_path / "colour.jpg")
    assert written.read_bytes()[:2] == b"\xff\xd8"
    with pytest.raises(ColorizeError, match="not a readable image") as caught:
        client.colorize(b"this is not an image" * 4)
    assert caught.value.status == 415
    with pytest.raises(ColorizeError, match="strength") as caught:
        client.colorize(rgb, strength=4)
    assert caught.value.status == 422
