"""The built-in sample set: natural colour photos that ship inside scikit-image and matplotlib.

Each is resized so its short side is 256 px and cut into non-overlapping 128 px tiles, so
the tool runs end to end with no data of one's own. Tiles are the set's "photos".
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
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_tiles() -> list[tuple[str, np.ndarray]]:
    """[(name#index, 128x128x3 uint8 RGB)] in a fixed order."""
    photos = [(n, _skimage_photo(n)) for n in SKIMAGE_PHOTOS]
    photos.append(("grace_hopper", _grace_hopper()))
    tiles = []
    for name, rgb in photos:
        h, w = rgb.shape[:2]
        scale = SHORT_SIDE / min(h, w)
        resized = cv2.resize(
            np.ascontiguousarray(rgb[..., :3]),
            (round(w * scale), round(h * scale)),
            interpolation=cv2.INTER_AREA,
        )
        rows, cols = resized.shape[0] // TILE, resized.shape[1] // TILE
        for i in range(rows * cols):
            r, c = divmod(i, cols)
            tile = resized[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            tiles.append((f"{name}#{i}", np.ascontiguousarray(tile)))
    return tiles
