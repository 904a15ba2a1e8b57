"""Decoding image bytes robustly: any common format, depth and channel layout, checked first.

Used by dataset loading, the CLI's predict and the Serve endpoint alike, so every caller
gets the same formats, the same limits and the same messages.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps, ImageSequence

from colorize.errors import ColorizeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # refuse anything larger before decoding it (decompression bombs)

# Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) is left as it is: it is a
# process-wide setting, and other code in the process relies on it. The project's checked
# decode reads the size from the header first and applies its own limit (`max_pixels`).


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header alone, or None when Pillow cannot tell.

    Each of Pillow's registered format readers is tried on the bytes, as `Image.open` does,
    but without `Image.open`'s decompression-bomb check: the caller compares the size with
    its own limit, which is what the size is read for (a bomb only parses its header here).
    """
    prefix = data[:16]
    for load_plugins in (Image.preinit, Image.init):
        load_plugins()
        for format_id in list(Image.ID):
            factory, accept = Image.OPEN[format_id]
            try:
                accepted = not accept or accept(prefix)
                if not accepted or isinstance(accepted, str):  # a str: a warning, not a match
                    continue
                with factory(io.BytesIO(data), None) as im:  # type: ignore[arg-type]  # no file name, as Image.open
                    return im.size
            except Exception:
                continue
    return None


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes -> uint8 or uint16 array: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA.

    EXIF orientation is applied; animated images give their first frame; palette and
    CMYK images come back as RGB. Raises ColorizeError saying what is wrong.
    """
    if not data:
        raise ColorizeError("the image is empty (0 bytes)")
    size = image_size_from_header(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ColorizeError(
            f"the image is {size[0]}x{size[1]} pixels, more than the limit of "
            f"{max_pixels:,}; resize it first",
            status=413,
        )
    image = _decode_with_opencv(data)
    if image is None:
        image = _decode_with_pillow(data)
    if image is None:
        raise ColorizeError(
            "the data is not a readable image (undecodable or truncated); "
            f"use one of {', '.join(IMAGE_EXTENSIONS)} or GIF",
            status=415,
        )
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ColorizeError(
            f"the image has {image.shape[0] * image.shape[1]:,} pixels, more than the limit "
            f"of {max_pixels:,}; resize it first",
            status=413,
        )
    return image


def _decode_with_opencv(data: bytes) -> np.ndarray | None:
    buffer = np.frombuffer(data, np.uint8)
    if data[:2] == b"\xff\xd8":
        # JPEG has no alpha; this flag set keeps 16-bit/grey and applies EXIF orientation.
        flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    else:
        flags = cv2.IMREAD_UNCHANGED  # keeps alpha and 16-bit (PNG, TIFF, WebP)
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:
        return None
    if image is None or image.size == 0 or image.dtype not in (np.uint8, np.uint16):
        return None
    if not _looks_complete(data):
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return image


def _looks_complete(data: bytes) -> bool:
    """OpenCV pads a truncated JPEG/PNG with grey instead of failing; catch that here."""
    if data[:2] == b"\xff\xd8":
        return data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" in data[-32:]
    return True


def _decode_with_pillow(data: bytes) -> np.ndarray | None:
    """Fallback for formats OpenCV lacks (GIF, some TIFF/WebP variants). Pillow's own
    decompression-bomb limit applies here as anywhere in the process (decode_image has
    checked the size against the project's limit already)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            frame = next(ImageSequence.Iterator(im))  # first frame of an animation
            frame = ImageOps.exif_transpose(frame)
            if frame.mode in ("I;16", "I;16B", "I"):
                return np.asarray(frame, dtype=np.uint16)
            mode = "RGBA" if "A" in frame.getbands() or "transparency" in frame.info else "RGB"
            if frame.mode == "L":
                mode = "L"
            return np.asarray(frame.convert(mode))
    except Image.DecompressionBombError as exc:  # this process lowered Image.MAX_IMAGE_PIXELS
        raise ColorizeError(f"the image is larger than this process allows Pillow to decode "
                            f"({exc}); resize it first", status=413) from None
    except Exception:
        return None


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Any decoded image -> (RGB uint8 (H, W, 3), alpha uint8 (H, W) or None)."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    alpha = None
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.shape[2] == 4:
        image, alpha = image[..., :3], image[..., 3]
    elif image.shape[2] == 2:  # grey + alpha
        image, alpha = np.repeat(image[..., :1], 3, axis=2), image[..., 1]
    return np.ascontiguousarray(image), alpha


def is_greyscale(rgb: np.ndarray, tolerance: int = 6, fraction: float = 0.01) -> bool:
    """True when almost no pixel has channels that differ: such a photo has no colour to learn."""
    small = rgb[:: max(1, rgb.shape[0] // 128), :: max(1, rgb.shape[1] // 128)]
    spread = small.max(axis=2).astype(np.int16) - small.min(axis=2)
    return float(np.mean(spread > tolerance)) < fraction


def encode_image(rgb: np.ndarray, alpha: np.ndarray | None = None, fmt: str = "png") -> bytes:
    """RGB uint8 (+ alpha) -> PNG, JPEG or WebP bytes. JPEG drops the alpha."""
    fmt = fmt.lower().lstrip(".")
    ext = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp"}.get(fmt)
    if ext is None:
        raise ColorizeError(f"unsupported output format {fmt!r}; use png, jpeg or webp")
    if alpha is not None and ext != ".jpg":
        bgr = cv2.cvtColor(np.dstack([rgb, alpha]), cv2.COLOR_RGBA2BGRA)
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(ext, bgr)
    if not ok:
        raise ColorizeError(f"could not encode the result as {fmt}")
    return buffer.tobytes()
