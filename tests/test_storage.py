"""colorize/distributed/storage.py: `--storage s3://...` for `colorize tune` and `colorize train`,
against a real S3-compatible server (moto's, started here on 127.0.0.1; never a cloud).

Ray writes its trials, checkpoints and experiment state to the bucket itself; the project's
own files of a search are uploaded beside them, and a resume on a machine without the local
copy downloads them first.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from colorize.distributed import storage
from colorize.errors import ColorizeError

moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
boto3 = pytest.importorskip("boto3", reason="the S3 tests need boto3 (with moto[server])")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A local S3 server and the environment that points pyarrow, Ray and boto3 at it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    client = boto3.client("s3")
    client.create_bucket(Bucket="runs")
    try:
        yield {"env": env, "client": client}
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="runs", Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


# --- the module ---------------------------------------------------------------------------


def test_uris_and_folders_are_told_apart(tmp_path):
    assert storage.is_uri("s3://bucket/x") and storage.is_uri("gs://b")
    assert not storage.is_uri(tmp_path) and not storage.is_uri("file:///tmp/x")
    assert not storage.is_uri("runs/s3:/x")
    assert storage.join("s3://b/p/", "exp", "s") == "s3://b/p/exp/s"
    assert storage.join(tmp_path, "exp") == str(tmp_path / "exp")
    assert storage.resolve("~") == os.path.expanduser("~")
    assert storage.local_copy("s3://b/p/exp") == storage.local_copy("s3://b/p/exp")
    assert storage.local_copy("s3://b/p/exp") != storage.local_copy("s3://b/q/exp")


def test_files_go_up_and_come_back(s3, tmp_path):
    prefix = f"s3://runs/{uuid.uuid4().hex}"
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "a.json").write_text('{"a": 1}')
    storage.upload(tmp_path / "up", prefix, ["a.json", "absent.json"])
    assert storage.exists(f"{prefix}/a.json") and not storage.exists(f"{prefix}/absent.json")
    assert storage.download(prefix, tmp_path / "down", ["a.json", "absent.json"]) == ["a.json"]
    assert json.loads((tmp_path / "down" / "a.json").read_text()) == {"a": 1}


def test_a_missing_bucket_or_server_is_one_line(s3, monkeypatch):
    assert storage.resolve("s3://runs/prefix/") == "s3://runs/prefix"
    with pytest.raises(ColorizeError, match=r"the bucket 'nobucket' does not exist"):
        storage.resolve("s3://nobucket/x")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    with pytest.raises(ColorizeError, match=r"cannot reach the storage") as caught:
        storage.resolve("s3://runs/x")
    assert "\n" not in str(caught.value)


# --- the commands -------------------------------------------------------------------------

TINY = ["--image-size", "16", "--depth", "2", "--base-filters", "4", "--batch-size", "2"]


def colorize(*args, cwd, timeout=420) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "colorize.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_tune_keeps_its_experiment_in_s3_and_resumes_from_it(s3, tiny_photos, cache_dir, tmp_path):
    prefix = uuid.uuid4().hex
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"batch_size": [2], "loss": ["mse"]}))
    args = ["tune", "--data", tiny_photos, "--name", "s", "--storage", f"s3://runs/{prefix}",
            "--folds", "2", "--num-samples", "1", "--max-epochs", "1", "--space", space,
            "--cache", cache_dir, "--quiet", *TINY]
    run = colorize(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    stored = keys(s3["client"], f"{prefix}/s/")
    names = {key.rsplit("/", 1)[-1] for key in stored}
    assert {"tune_request.json", "optuna.db", "trials.csv", "best_config.json"} <= names, stored
    assert any(name.startswith("experiment_state") for name in names), stored  # Ray's own
    assert any("/checkpoint_" in key for key in stored), stored  # a trial's checkpoint
    assert f"experiment: s3://runs/{prefix}/s" in run.stdout

    # Another machine: no local copy. The same command finds the finished search in the bucket.
    local = storage.local_copy(f"s3://runs/{prefix}/s")
    for path in sorted(local.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    local.rmdir()
    again = colorize(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "exists with the same options: resuming it" in again.stderr
    assert json.loads((local / "best_config.json").read_text())["config"]["loss"] == "mse"


@pytest.mark.slow
def test_train_checkpoints_into_s3(s3, tiny_photos, cache_dir, tmp_path):
    prefix = uuid.uuid4().hex
    run = colorize("train", "--data", tiny_photos, "--out", tmp_path / "out", "--workers", "1",
                   "--storage", f"s3://runs/{prefix}", "--epochs", "1", "--config", "seed",
                   "--cache", cache_dir, *TINY, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    stored = keys(s3["client"], f"{prefix}/out/")
    assert any("/epoch_0001/" in key and key.endswith("state.json") for key in stored), stored
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["distributed"]["storage"] == f"s3://runs/{prefix}/out"
    assert (tmp_path / "out" / "model" / "model.keras").is_file()


def test_a_bad_storage_uri_is_one_line_and_exit_1(s3, tiny_photos, tmp_path):
    run = colorize("tune", "--data", tiny_photos, "--name", "s", "--storage", "s3://nobucket/x",
                   cwd=tmp_path, timeout=120)
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith("colorize: error: --storage s3://nobucket/x")
    assert "Traceback" not in run.stderr
