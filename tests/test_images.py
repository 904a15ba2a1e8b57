"""colorize/images.py: decoding every layout, refusing bad data with clear errors."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from colorize.errors import ColorizeError
from colorize.images import decode_image, encode_image, is_greyscale, split_alpha


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def _pil_bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def test_rgb_png_comes_back_rgb_not_bgr():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    decoded = decode_image(_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))
    assert decoded.shape == (4, 5, 3) and decoded[0, 0].tolist() == [255, 0, 0]


def test_greyscale_rgba_palette_and_16_bit():
    assert decode_image(_png(np.full((3, 4), 9, np.uint8))).shape == (3, 4)
    rgba = decode_image(_png(np.full((3, 4, 4), 200, np.uint8)))
    assert rgba.shape == (3, 4, 4)
    deep = decode_image(_png(np.full((3, 4, 3), 60000, np.uint16)))
    assert deep.dtype == np.uint16 and deep.max() == 60000
    palette = Image.new("P", (6, 2))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    decoded = decode_image(_pil_bytes(palette, "PNG"))
    assert decoded.shape == (2, 6, 3) and decoded[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _pil_bytes(image, "JPEG", exif=exif.tobytes())
    assert decode_image(data).shape[:2] == (40, 20)


def test_cmyk_jpeg_and_animated_gif_first_frame():
    cmyk = Image.new("CMYK", (8, 6), (0, 255, 255, 0))  # red in CMYK
    decoded = decode_image(_pil_bytes(cmyk, "JPEG"))
    assert decoded.shape == (6, 8, 3) and decoded[0, 0, 0] > 200 and decoded[0, 0, 1] < 60
    frames = [Image.new("RGB", (5, 7), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    first = split_alpha(decode_image(gif.getvalue()))[0]
    assert first.shape == (7, 5, 3) and first[0, 0, 0] > 200


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
        (_png(np.zeros((20, 20, 3), np.uint8))[:60], "not a readable image"),
    ],
)
def test_bad_bytes_give_clear_errors(data, words):
    with pytest.raises(ColorizeError, match=words):
        decode_image(data)


def test_truncated_jpeg_is_refused():
    data = _pil_bytes(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ColorizeError):
        decode_image(data[: len(data) // 2])


def test_enormous_image_refused_from_its_header():
    big = _pil_bytes(Image.new("L", (3000, 3000)), "PNG")  # small file, 9 MP
    with pytest.raises(ColorizeError, match="limit") as info:
        decode_image(big, max_pixels=1_000_000)
    assert info.value.status == 413


def test_split_alpha_and_greyscale_detection():
    rgb, alpha = split_alpha(np.full((2, 2, 4), 7, np.uint8))
    assert rgb.shape == (2, 2, 3) and alpha.shape == (2, 2)
    rgb, alpha = split_alpha(np.full((2, 2), 65535, np.uint16))
    assert rgb.dtype == np.uint8 and rgb.max() == 255 and alpha is None
    assert is_greyscale(np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8, 1), 3, 2))
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    assert not is_greyscale(colour)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_round_trip(fmt):
    rgb = np.full((6, 9, 3), (30, 120, 220), np.uint8)
    back = decode_image(encode_image(rgb, None, fmt))
    assert back.shape == (6, 9, 3) and np.abs(back.astype(int) - rgb).max() < 12
    with pytest.raises(ColorizeError, match="unsupported output format"):
        encode_image(rgb, None, "bmp2")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_a_bomb_header_is_refused_by_the_project_in_one_line():
    bomb = _png_claiming(30_000, 30_000)  # 900 MP claimed, 100 bytes
    with pytest.raises(ColorizeError, match=r"30000x30000 pixels, more than the limit") as info:
        decode_image(bomb)
    assert info.value.status == 413 and "\n" not in str(info.value)


def test_the_project_limit_not_pillows_global_one_applies_to_its_decode(monkeypatch):
    """Pillow's process-wide limit is the process's (lowered here); the project's decode
    keeps its own, both ways: a lowered global neither breaks it nor is changed by it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    data = _png(np.full((100, 100, 3), 80, np.uint8))  # 10,000 pixels > 2 x 1,000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))  # Pillow outside the project: the guard is on
    assert decode_image(data).shape == (100, 100, 3)  # the project's check: its own limit
    with pytest.raises(ColorizeError, match="more than the limit"):
        decode_image(data, max_pixels=5_000)
    assert Image.MAX_IMAGE_PIXELS == 1_000  # left as the process set it


def test_importing_colorize_leaves_pillows_bomb_guard_on(tmp_path):
    """A fresh interpreter imports colorize and every module that decodes images; Pillow,
    used outside the project's code, still refuses a bomb, and the project still refuses it
    with its own one-line error."""
    import subprocess
    import sys

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(30_000, 30_000))
    script = f"""
from PIL import Image
default = Image.MAX_IMAGE_PIXELS
import colorize, colorize.images, colorize.data, colorize.batch_predict, colorize.distributed.batch_ray
import colorize.cli, colorize.inference, colorize.serve.app
assert Image.MAX_IMAGE_PIXELS == default, Image.MAX_IMAGE_PIXELS
try:
    Image.open({str(bomb)!r})
except Image.DecompressionBombError:
    pass
else:
    raise SystemExit("Pillow opened the bomb")
from colorize.errors import ColorizeError
try:
    colorize.images.decode_image(open({str(bomb)!r}, "rb").read())
except ColorizeError as exc:
    print(exc)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().startswith("the image is 30000x30000 pixels, more than the limit")
