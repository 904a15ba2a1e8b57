"""`colorize submit` / `colorize jobs` against a real two-node Ray cluster on 127.0.0.1.

The cluster (head + one worker, one CPU each, token auth, ports from 36500) is started by
tests.conftest.loopback_cluster (colorize.distributed.local_cluster, `colorize cluster up`) once for this module, and
always stopped at the end, also when a test fails. A tiny tuning job (two trials of one
epoch, at most one per node) is submitted through the Jobs API; its trials' process ids,
read from Tune's results, are matched to node ids through the dashboard's state API.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from colorize.cli import main
from colorize.distributed import jobs, local_cluster
from colorize.errors import ColorizeError
from tests.conftest import loopback_cluster

BASE_PORT = 36500  # not Ray's defaults, nor scripts/local-cluster's: no collision on this machine
EXPERIMENT = "cluster-tune"


@pytest.fixture(scope="module")
def cluster():
    with loopback_cluster(BASE_PORT) as started:
        yield started


def test_address_and_token_come_from_options_then_ray_variables(tmp_path, monkeypatch):
    for key in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    monkeypatch.setattr(jobs, "DEFAULT_TOKEN_FILE", tmp_path / ".ray" / "auth_token")
    with pytest.raises(ColorizeError, match="no cluster address"):
        jobs.dashboard_address()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address is not the Jobs API
    with pytest.raises(ColorizeError):
        jobs.dashboard_address()
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "127.0.0.1:8265/")
    assert jobs.dashboard_address() == "http://127.0.0.1:8265"
    assert jobs.dashboard_address("https://h:1") == "https://h:1"

    assert jobs.read_token() is None
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert jobs.read_token() == "from-file"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert jobs.read_token() == "from-env"
    assert jobs.read_token(token_file) == "from-file"  # the option wins
    with pytest.raises(ColorizeError, match="cannot read the auth token file"):
        jobs.read_token(tmp_path / "missing")


def test_entrypoint_joins_the_cluster_and_quotes_arguments():
    assert jobs.entrypoint("tune", ["--data", "my photos"]) == (
        "python -m colorize.cli tune --data 'my photos' --address auto")
    assert jobs.entrypoint("train", ["--address=ray://h:10001"]).endswith("--address=ray://h:10001")
    assert "--address" not in jobs.entrypoint("fit", ["--out", "x"])
    with pytest.raises(ColorizeError, match="cannot submit 'serve'"):
        jobs.entrypoint("serve", [])


def test_runtime_env_ships_the_source_tree_without_environments():
    env = jobs.runtime_env()
    assert Path(env["working_dir"], "colorize", "distributed", "jobs.py").is_file()
    assert ".venv" in env["excludes"] and ".git" in env["excludes"]
    assert "working_dir" not in jobs.runtime_env(ship=False)


def test_unreachable_cluster_is_one_clear_line(capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["jobs", "list", "--address", f"http://127.0.0.1:{port}"]) == 1  # runtime
    assert "no Ray dashboard answers at" in capsys.readouterr().err


def auth(cluster) -> dict:
    return {"Authorization": f"Bearer {cluster.token()}"}


@pytest.fixture(scope="module")
def tune_job(cluster, tiny_photos, tmp_path_factory, cache_dir):
    """Submit a tiny tuning job with `colorize submit`; wait for it; (job id, storage)."""
    storage = tmp_path_factory.mktemp("experiments")
    space = storage / "space.json"
    space.write_text(json.dumps({"batch_size": [4], "loss": ["mse", "ssim"]}))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([
        "submit", "--address", cluster.dashboard_url, "--token-file", cluster.token_path,
            "tune", "--data", str(tiny_photos), "--name", EXPERIMENT, "--storage", str(storage),
            "--folds", "2", "--num-samples", "2", "--max-epochs", "1", "--max-concurrent", "2",
            "--space", str(space), "--image-size", "32", "--depth", "2", "--base-filters", "8",
            "--batch-size", "4", "--cache", str(cache_dir),
        ])
    printed = printed.getvalue()
    assert code == 0
    job_id = next(line.split()[1] for line in printed.splitlines() if line.startswith("job:"))
    assert f"dashboard: {cluster.dashboard_url}/#/jobs/{job_id}" in printed
    client = jobs.connect(cluster.dashboard_url, cluster.token_path)
    status = jobs.wait(client, job_id, timeout_s=240)
    assert status == "SUCCEEDED", client.get_job_logs(job_id)[-3000:]
    return job_id, storage / EXPERIMENT


@pytest.mark.slow
def test_cluster_has_two_nodes_on_loopback(cluster):
    reply = requests.get(f"{cluster.dashboard_url}/api/v0/nodes", headers=auth(cluster), timeout=10)
    nodes = reply.json()["data"]["result"]["result"]
    assert [n["state"] for n in nodes] == ["ALIVE", "ALIVE"]
    assert {n["node_ip"] for n in nodes} == {"127.0.0.1"}
    assert sorted(n["is_head_node"] for n in nodes) == [False, True]


@pytest.mark.slow
def test_tune_job_ran_trials_on_both_nodes(cluster, tune_job):
    job_id, experiment = tune_job
    trial_pids = set()
    for result in experiment.glob("*/result.json"):
        lines = result.read_text().splitlines()
        trial_pids |= {json.loads(line)["pid"] for line in lines if line.strip()}
    assert len(trial_pids) == 2, trial_pids  # two trials, each in its own actor
    base = cluster.dashboard_url
    actors = requests.get(f"{base}/api/v0/actors?detail=1&limit=10000", headers=auth(cluster),
                          timeout=30).json()["data"]["result"]["result"]
    trial_nodes = {a["node_id"] for a in actors if a.get("pid") in trial_pids}
    nodes = requests.get(f"{base}/api/v0/nodes", headers=auth(cluster), timeout=10).json()
    node_ids = {n["node_id"] for n in nodes["data"]["result"]["result"]}
    assert trial_nodes == node_ids  # one trial on the head, one on the worker


@pytest.mark.slow
def test_results_are_in_the_storage_path(tune_job):
    _, experiment = tune_job
    best = json.loads((experiment / "best_config.json").read_text())
    assert best["config"]["image_size"] == 32
    rows = (experiment / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + two trials


@pytest.mark.slow
def test_job_state_and_logs_through_the_rest_api(cluster, tune_job):
    job_id, _ = tune_job
    base = cluster.dashboard_url
    info = requests.get(f"{base}/api/jobs/{job_id}", headers=auth(cluster), timeout=10).json()
    assert info["status"] == "SUCCEEDED"
    assert info["entrypoint"].startswith("python -m colorize.cli tune ")
    assert "--address auto" in info["entrypoint"]  # the job joined the cluster, not a new Ray
    logs = requests.get(f"{base}/api/jobs/{job_id}/logs", headers=auth(cluster), timeout=10).json()
    assert "best config:" in logs["logs"] and "trials.csv" in logs["logs"]
    assert re.search(r"trial +batch_size +loss +epoch +ssim_mean +status", logs["logs"])  # live table


@pytest.mark.slow
def test_jobs_cli_lists_and_reads_back(cluster, tune_job, capsys):
    job_id, _ = tune_job
    options = ["--address", cluster.dashboard_url, "--token-file", cluster.token_path]
    assert main(["jobs", "list", *options]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["jobs", "status", job_id, *options]) == 0
    assert "status: SUCCEEDED" in capsys.readouterr().out
    assert main(["jobs", "logs", job_id, *options]) == 0
    assert "trials.csv" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_stops_following_and_leaves_the_job_running(cluster, tiny_photos, tmp_path):
    import signal
    import sys
    import threading
    import time

    follow = subprocess.Popen(
        [sys.executable, "-m", "colorize.cli", "submit", "--address", cluster.dashboard_url,
         "--token-file", str(cluster.token_path), "--follow", "fit", "--data", str(tiny_photos),
         "--out", str(tmp_path / "fit"), "--epochs", "6", "--image-size", "32", "--depth", "2",
         "--base-filters", "8", "--batch-size", "4", "--cache", str(tmp_path / "cache")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    job_id = follow.stdout.readline().split()[1]  # "job: raysubmit_..."
    shown: list[str] = []  # what --follow printed: the job's logs as they come

    def read() -> None:
        for line in follow.stdout:
            shown.append(line)

    threading.Thread(target=read, daemon=True).start()
    client = jobs.connect(cluster.dashboard_url, cluster.token_path)
    try:
        deadline = time.time() + 240
        while not any("epoch 1/6: loss " in line for line in shown) and time.time() < deadline:
            time.sleep(0.5)  # the job's epoch lines come through the follow
        assert any("epoch 1/6: loss " in line for line in shown), "".join(shown)[-2000:]
        started = time.monotonic()
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=60)
        err = follow.stderr.read()
        assert follow.returncode == 130 and time.monotonic() - started < 30, err
        assert err.strip().splitlines()[-1] == (
            f"colorize: stopped following job {job_id} on SIGINT; the job keeps running on the "
            f"cluster (colorize jobs logs {job_id} --follow follows it again, colorize jobs stop "
            f"{job_id} stops it)")
        assert jobs.wait(client, job_id, timeout_s=240) == "SUCCEEDED"  # it went on to the end
    finally:
        follow.kill()
        client.stop_job(job_id)
        jobs.wait(client, job_id, timeout_s=60)
        settle(cluster)  # the job's worker processes gone before the tests that count them


def settle(cluster, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
    """Wait until the cluster's process count has not changed for `quiet_s` seconds."""
    import time

    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = sum(len(local_cluster._node_processes(node)) for node in cluster.nodes)
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)


@pytest.mark.slow
def test_client_without_the_token_is_refused(cluster, tmp_path, capsys):
    base = cluster.dashboard_url
    assert requests.get(f"{base}/api/jobs/", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer " + "0" * 64}
    assert requests.get(f"{base}/api/jobs/", headers=wrong, timeout=10).status_code == 403
    assert requests.get(f"{base}/api/jobs/", headers=auth(cluster), timeout=10).status_code == 200

    bad_token = tmp_path / "token"
    bad_token.write_text("0" * 64)
    with pytest.raises(ColorizeError, match="refused the token"):
        jobs.connect(base, bad_token)
    assert main(["jobs", "list", "--address", base, "--token-file", str(bad_token)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("colorize: error: the cluster at") and "\n" not in err


@pytest.mark.slow
def test_down_stops_exactly_what_up_started(cluster):
    import psutil

    bystander = subprocess.Popen(["sleep", "120"])  # not the cluster's: must survive
    try:
        started = [p.pid for node in cluster.nodes for p in local_cluster._node_processes(node)]
        assert len(started) > 5
        # idle Ray workers may exit by themselves between the listing and the stop
        assert 0 < local_cluster.stop(cluster, grace_s=10) <= len(started)
        survivors = [pid for pid in started if psutil.pid_exists(pid)
                     and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert survivors == []
        assert bystander.poll() is None
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{cluster.dashboard_url}/api/version", timeout=5)
    finally:
        bystander.kill()
        bystander.wait()
