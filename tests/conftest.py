"""Shared fixtures: tiny generated photos, a tiny configuration, a tiny trained artifact,
one local Ray instance per test session, and `loopback_cluster` for modules that need a real multi-node cluster."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]


# Ray's own actors log tracebacks of their own in a teardown: Serve's proxy for a request
# whose ingress replica just went (the plain 500 the serve tests allow), Ray Train's
# PlacementGroupCleaner when a State API call fails with anything but RayStateApiException
# (reviewed upstream, ray-project/ray#65447). Ray's noise, not this project's: lines from
# these actors are told apart, and any other traceback fails a test.
RAY_OWN_ACTORS = ("(ProxyActor pid=", "(ServeController pid=", "(PlacementGroupCleaner pid=")


def own_lines(lines) -> list[str]:
    """The output lines not logged by Ray's own actors."""
    return [line for line in lines if not any(actor in line for actor in RAY_OWN_ACTORS)]


def make_photo(rng: np.random.Generator, height: int = 48, width: int = 48) -> np.ndarray:
    """A small colourful RGB uint8 picture whose colour follows its lightness (dark blue to
    bright yellow), so a model can learn it: a random gradient with a disc on it."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xs / max(1, width - 1) + np.sin(angle) * ys / max(1, height - 1)
    value = (ramp - ramp.min()) / max(1e-6, np.ptp(ramp))
    cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(4, 16)
    value[(ys - cy) ** 2 + (xs - cx) ** 2 < r * r] = rng.uniform(0, 1)
    dark, bright = np.array([30, 50, 170], np.float32), np.array([250, 210, 40], np.float32)
    image = (1 - value[..., None]) * dark + value[..., None] * bright
    return np.clip(image, 0, 255).astype(np.uint8)


def write_photos(folder: Path, count: int, seed: int = 0, size=(48, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        rgb = make_photo(rng, *size)
        cv2.imwrite(str(folder / f"photo_{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def tiny_photos(tmp_path_factory) -> Path:
    """A folder of 20 generated 48x48 colour photos."""
    return write_photos(tmp_path_factory.mktemp("photos"), 20)


@pytest.fixture(scope="session")
def tiny_config():
    from colorize.config import TrainConfig

    return TrainConfig(image_size=32, depth=2, base_filters=8, batch_size=4, epochs=2, patience=5)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cache")
    os.environ["COLORIZE_CACHE"] = str(path)  # keep tests out of the user's cache
    return path


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_photos, tiny_config, cache_dir) -> Path:
    """A model artifact trained for 2 epochs on the tiny photos (written by `colorize fit`)."""
    from colorize.fit_run import run_fit

    out = tmp_path_factory.mktemp("fit")
    run_fit(tiny_config, tiny_photos, out, cache_dir, verbose=0)
    return out / "model"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (address='local' never joins another)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def tiny_rgb_batch() -> np.ndarray:
    """Four 24x24 generated colour photos, uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(1)
    return np.stack([make_photo(rng, 24, 24) for _ in range(4)])


@contextlib.contextmanager
def loopback_cluster(base_port: int, workers: int = 1, cpus: int = 1):
    """A real Ray cluster of 1 + `workers` nodes on 127.0.0.1 with token auth (what
    `colorize cluster up` starts), on ports from `base_port` (or 1000 higher, up to 4 times,
    while another run of the suite on this machine holds them); always stopped at the end."""
    from colorize.distributed import local_cluster
    from colorize.errors import ColorizeError

    state = Path(tempfile.mkdtemp(prefix="clz-test-", dir="/tmp"))  # short: Ray's socket paths
    started = None
    try:
        for attempt in range(5):
            try:
                started = local_cluster.up(state, workers=workers, cpus=cpus,
                                           base_port=base_port + 1000 * attempt,
                                           object_store_mb=128)
                break
            except ColorizeError as exc:
                if "is in use" not in str(exc) or attempt == 4:
                    raise
        yield started
    finally:
        if started is not None:
            local_cluster.stop(started, grace_s=10)
        shutil.rmtree(state, ignore_errors=True)
