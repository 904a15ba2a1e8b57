"""`colorize pipeline` end to end on tiny settings: a search of two one-epoch trials, the
best configuration trained on one Ray Train worker, and the model served on 127.0.0.1,
answering a real HTTP request."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from colorize.cli import main

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_pipeline_ends_with_a_serving_endpoint(ray_local, tiny_photos, cache_dir, tmp_path, capsys):
    from ray import serve

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"batch_size": [4], "loss": ["mse", "ssim"]}))
    out = tmp_path / "pipeline"
    try:
        code = main([
            "pipeline", "--data", str(tiny_photos), "--out", str(out), "--space", str(space),
            "--folds", "2", "--num-samples", "2", "--max-epochs", "1", "--workers", "1",
            "--port", str(free_port()), "--cache", str(cache_dir), "--image-size", "32",
            "--depth", "2", "--base-filters", "8", "--batch-size", "4", "--epochs", "2",
            "--no-wait",
        ])
        assert code == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[-2].startswith("endpoint: http://127.0.0.1:")
        assert lines[-1].startswith("report: ")
        endpoint, report = lines[-2].split()[1], Path(lines[-1].split()[1])
        assert report.is_file()
        # The Tune experiment and the Ray Train run are named after --out's folder
        assert (out / "tune" / "pipeline" / "best_config.json").is_file()
        assert (out / "train" / "ray" / "pipeline").is_dir()
        assert (out / "train" / "model" / "metadata.json").is_file()
        assert list((out / "train" / "tensorboard").rglob("events.out.tfevents.*"))

        grey = cv2.cvtColor(cv2.imread(str(sorted(tiny_photos.glob("*.png"))[0])), cv2.COLOR_BGR2GRAY)
        ok, png = cv2.imencode(".png", grey)
        reply = requests.post(f"{endpoint}colorize", timeout=120,
                              files={"image": ("grey.png", png.tobytes(), "image/png")})
        assert reply.status_code == 200, reply.text
        colour = cv2.imdecode(np.frombuffer(reply.content, np.uint8), cv2.IMREAD_COLOR)
        assert colour.shape == (*grey.shape, 3)
    finally:
        serve.shutdown()
