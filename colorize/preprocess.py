"""The one path from a photo to the model's scale, shared by training and inference.

Training cuts its tiles from the RGB photo resized so that its short side is `working_side`
(data.py), then converts them to Lab; inference converts the photo to Lab first and resizes
its L by the same rule (inference.py, so that a colour photo and its grey version give the
same input). Same scale, geometry and interpolation: the model sees the same L for the same
photo in both, to a fraction of an L unit (tests/test_inference.py). Only OpenCV and
NumPy here: the data pipeline and a Serve replica import it alike.
"""

from __future__ import annotations

import cv2
import numpy as np

WORKING_MARGIN = 1.125  # stored tiles are 1/8 larger than the crop: room to jitter


def working_side(image_size: int) -> int:
    """The short side a photo is resized to for a model trained on `image_size` crops:
    the side of the stored training tiles, and the scale inference runs the model at."""
    return int(round(image_size * WORKING_MARGIN))


def resize_short_side(image: np.ndarray, side: int, max_long: int | None = None) -> np.ndarray:
    """`image` resized so that its short side is `side` (area averaging to shrink, bilinear
    to enlarge); each side is capped at `max_long` when given (a very long panorama)."""
    h, w = image.shape[:2]
    scale = side / min(h, w)
    new_h, new_w = round(h * scale), round(w * scale)
    if max_long:
        new_h, new_w = min(new_h, max_long), min(new_w, max_long)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (max(1, new_w), max(1, new_h)), interpolation=interpolation)
