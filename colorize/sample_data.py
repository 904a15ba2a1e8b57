"""The built-in sample set: natural colour photos that ship inside scikit-image and matplotlib.

Each is resized so its short side is 256 px; for training it is cut into non-overlapping
128 px tiles (4 to 6 a photo, 30 in all). The photo, not the tile, is the unit of the
train/validation/test split, so no test tile comes from a photo seen in training.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

TILE = 128  # px, side of each tile
SHORT_SIDE = 256  # px, photos are resized to this before cutting
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def _grace_hopper() -> np.ndarray:
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_photo_names() -> list[str]:
    return [*SKIMAGE_PHOTOS, "grace_hopper"]


def load_sample_photo(name: str) -> np.ndarray:
    """One sample photo as RGB uint8, resized so its short side is SHORT_SIDE."""
    rgb = _grace_hopper() if name == "grace_hopper" else _skimage_photo(name)
    h, w = rgb.shape[:2]
    scale = SHORT_SIDE / min(h, w)
    return cv2.resize(
        np.ascontiguousarray(rgb[..., :3]),
        (round(w * scale), round(h * scale)),
        interpolation=cv2.INTER_AREA,
    )


def cut_tiles(photo: np.ndarray) -> list[np.ndarray]:
    """The non-overlapping TILE x TILE tiles of a photo, row by row."""
    rows, cols = photo.shape[0] // TILE, photo.shape[1] // TILE
    return [
        np.ascontiguousarray(photo[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE])
        for r in range(rows)
        for c in range(cols)
    ]
