"""The model-throughput benchmark stays runnable (it needs neither the shared photos nor
Ray): `bench/throughput.py --config photos` once failed on the recipe's "rgb" loss, which
needs the (a/b, L) target, and nothing noticed until someone ran it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_throughput_quick_runs_the_recipes_model():
    done = subprocess.run([sys.executable, "bench/throughput.py", "--quick", "--config", "photos"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:2] == ["32", "float32"]]
    assert len(rows) == 1, done.stdout
    train_ips, infer_ips = float(rows[0][2]), float(rows[0][3])
    assert train_ips > 0 and infer_ips > 0


@pytest.mark.slow
def test_throughput_compares_the_heads():
    done = subprocess.run([sys.executable, "bench/throughput.py", "--quick", "--heads"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["32"]]
    assert [row[1] for row in rows] == ["regression"] * 3 + ["bins"] * 2, done.stdout  # "... stride 4"
    assert rows[0][-2:] == ["1.00x", "1.00x"] and all(float(row[-5]) > 0 for row in rows)  # train img/s


@pytest.mark.slow
def test_throughput_compares_the_encoder_frozen_and_fine_tuned():
    done = subprocess.run([sys.executable, "bench/throughput.py", "--quick", "--config", "pretrained",
                           "--encoder-lr-scales", "0,0.1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:2] == ["32", "float32"]]
    assert [row[2] for row in rows] == ["0", "0.1"], done.stdout
    assert rows[0][-1] == "1.00x" and all(float(row[3]) > 0 for row in rows)  # train img/s
    refused = subprocess.run([sys.executable, "bench/throughput.py", "--quick", "--encoder-lr-scales", "0,0.1"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "needs a configuration with a pretrained encoder" in refused.stderr
