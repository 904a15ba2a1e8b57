"""colorize/metrics.py: agreement with scikit-image, colourfulness, the grey baseline."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorize import metrics


@pytest.mark.parametrize("shape", [(32, 48, 3), (11, 13, 3), (64, 40, 3)])
def test_psnr_and_ssim_agree_with_scikit_image(shape):
    rng = np.random.default_rng(sum(shape))
    truth = rng.integers(0, 256, shape, dtype=np.uint8)
    pred = np.clip(truth.astype(int) + rng.integers(-40, 40, shape), 0, 255).astype(np.uint8)
    assert metrics.psnr(truth, pred) == pytest.approx(peak_signal_noise_ratio(truth, pred), abs=1e-6)
    expected = structural_similarity(truth, pred, channel_axis=-1, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False, data_range=255)
    assert metrics.ssim(truth, pred) == pytest.approx(expected, abs=1e-4)


def test_identical_images_score_perfectly():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert metrics.psnr(image, image) == metrics.PSNR_CAP
    assert metrics.ssim(image, image) == pytest.approx(1.0)


def test_colourfulness_is_zero_for_grey_and_grows_with_saturation():
    grey = np.full((8, 8, 3), 128, np.uint8)
    assert metrics.colourfulness(grey) == 0
    pale = np.zeros((8, 8, 3), np.uint8) + [140, 120, 120]
    vivid = np.zeros((8, 8, 3), np.uint8) + [250, 20, 20]
    assert 0 < metrics.colourfulness(pale.astype(np.uint8)) < metrics.colourfulness(vivid.astype(np.uint8))


def test_mean_colourfulness_of_a_batch_a_list_and_nothing():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    expected = np.mean([metrics.colourfulness(image) for image in images])
    assert metrics.mean_colourfulness(images) == pytest.approx(expected)
    assert metrics.mean_colourfulness(list(images)) == pytest.approx(expected)
    assert np.isnan(metrics.mean_colourfulness([]))  # as score() gives for no images


def test_grey_baseline_beside_the_model(tiny_rgb_batch):
    truths = list(tiny_rgb_batch)
    result = metrics.compare_with_grey(truths, truths)  # a perfect "model"
    assert result["grey"]["colourfulness"] < 1.0  # grey has no colour
    assert result["model"]["psnr"] > result["grey"]["psnr"]
    assert result["model"]["ssim"] > result["grey"]["ssim"]
    assert result["truth"]["colourfulness"] == pytest.approx(result["model"]["colourfulness"])
    assert result["images"] == 4
