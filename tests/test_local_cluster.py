"""`colorize cluster` (and scripts/local-cluster)'s fast parts: port layout, refusing a busy
port, a clear error when nothing was started, running from any environment. The real
two-node cluster is exercised in tests/test_jobs.py and tests/test_serve_cluster.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from colorize.distributed import local_cluster
from colorize.errors import ColorizeError

ROOT = Path(__file__).resolve().parents[1]


def test_nodes_get_disjoint_ports_above_the_base():
    base = 40000
    head_ports = {base, base + 1, base + 2}
    seen = set(head_ports)
    for index in range(3):
        ports = local_cluster.node_ports(base, index)
        assert ports["min-worker-port"] < ports["max-worker-port"]
        span = set(range(ports["min-worker-port"], ports["max-worker-port"] + 1))
        singles = {v for k, v in ports.items() if "worker-port" not in k}
        assert not (span | singles) & seen
        seen |= span | singles


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ColorizeError, match=f"port {port} on 127.0.0.1 is in use"):
            local_cluster.up(tmp_path / "state", base_port=port)
    assert not (tmp_path / "state" / "cluster.json").exists()


def test_down_without_a_cluster_is_one_clear_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "colorize.cli", "cluster", "down",
                          "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1  # a runtime error: nothing to stop
    assert run.stderr.strip() == (
        f"colorize: error: no local cluster recorded in {tmp_path} (start one with `up`)")


def test_the_script_runs_without_a_venv_in_the_clone(tmp_path):
    """Installed in another environment (first on PATH), not in the clone's .venv."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "local-cluster", clone / "scripts")
    env = {k: v for k, v in os.environ.items() if k != "COLORIZE_PYTHON"}
    # the environment colorize is installed in comes first on PATH (as when activated)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    run = subprocess.run([str(clone / "scripts" / "local-cluster"), "status", "--dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip() == (
        f"colorize: error: no local cluster recorded in {tmp_path} (start one with `up`)")
