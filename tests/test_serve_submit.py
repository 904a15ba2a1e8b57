"""Serving onto clusters: serve/config.yaml with Ray's own `serve run` and `serve deploy`, and
`colorize submit serve` (colorize.distributed.serve_submit), each answering real HTTP on 127.0.0.1.

`serve run` runs on a local Ray it starts itself; `serve run --address` and `serve deploy`
run on a real two-node cluster on 127.0.0.1 with token auth (tests.conftest.loopback_cluster,
ports from 36700), and so does `colorize submit serve`, which ships this tree, answers the
same colours as the in-process colorizer, is refused without the token, and autoscales its
model deployment from 1 to 2 replicas under a load that fills a replica's batches, then back
to 1 after the load (observed through Serve's status; the load is bounded in count and time).
Every test removes what it deployed (Serve shut down through the REST API).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from colorize.cli import main
from colorize.distributed import jobs, serve_submit
from colorize.errors import ColorizeError
from tests.conftest import loopback_cluster, make_photo

ROOT = Path(__file__).resolve().parents[1]
SERVE_CLI = str(Path(sys.executable).parent / "serve")
BASE_PORT = 36700  # not Ray's defaults, nor test_jobs' nor `colorize cluster`'s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_photo(seed: int = 0) -> tuple[bytes, np.ndarray]:
    import cv2

    rgb = make_photo(np.random.default_rng(seed), 40, 56)
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(), rgb


def config_file(folder: Path, model: Path, port: int, name: str = "colorize") -> Path:
    """serve/config.yaml as a user edits it: the model folder and a free port."""
    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["name"] = name
    app["args"].update(model_dir=str(model), cpus_per_replica=0.5)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for_colour(url: str, timeout_s: float = 240, process=None) -> httpx.Response:
    """POST a photo to URL/colorize until it answers 200 (the app is still deploying before)."""
    body, _ = png_photo()
    deadline = time.time() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the serve command exited with {process.returncode}")
        try:
            answer = httpx.post(f"{url}colorize", content=body, timeout=60,
                                headers={"Content-Type": "image/png"})
            if answer.status_code == 200:
                return answer
        except httpx.TransportError:
            pass
        assert time.time() < deadline, f"{url} did not answer in {timeout_s} s"
        time.sleep(2)


def assert_is_colour_photo(answer: httpx.Response) -> None:
    import io

    from PIL import Image

    assert answer.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(answer.content)))
    assert image.shape == (40, 56, 3)


def test_serve_config_is_serve_config_yaml_filled_in():
    config = serve_submit.serve_config({"model_dir": "/shared/model", "max_replicas": 3},
                                       name="m2", route_prefix="/m2", port=9001,
                                       runtime_env={"working_dir": "gcs://_ray_pkg_x.zip"})
    template = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    (app,) = config["applications"]
    assert app["import_path"] == template["applications"][0]["import_path"]
    assert (app["name"], app["route_prefix"]) == ("m2", "/m2")
    assert app["args"] == {"model_dir": "/shared/model", "max_replicas": 3}
    assert config["http_options"] == {**template["http_options"], "port": 9001}
    assert config["proxy_location"] == template["proxy_location"]
    with pytest.raises(ColorizeError, match="unknown serve settings: max_replica"):
        serve_submit.serve_config({"model_dir": "m", "max_replica": 3})
    with pytest.raises(ColorizeError, match="invalid Serve config at applications.0.runtime_env"):
        serve_submit.serve_config({"model_dir": "m"}, runtime_env={"working_dir": "/not/shipped"})


def test_autoscaling_delays_override_only_autoscaling_deployments():
    scaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4.0,
               "upscale_delay_s": 30.0, "metrics_interval_s": 10.0}
    app = {"deployments": {"Model": {"deployment_config": {"autoscaling_config": scaling}},
                           "Front": {"deployment_config": {"autoscaling_config": None}}}}
    assert serve_submit.autoscaling_overrides(app, upscale_delay_s=1, downscale_delay_s=None) \
        == [{"name": "Model", "autoscaling_config": {"min_replicas": 1, "max_replicas": 2,
                                                      "target_ongoing_requests": 4.0,
                                                      "upscale_delay_s": 1}}]
    assert serve_submit.autoscaling_overrides(app) == []


@pytest.fixture(scope="module")
def cluster():
    with loopback_cluster(BASE_PORT) as started:
        yield started


@pytest.fixture()
def serve_client(cluster):
    """A Serve REST client on the cluster (with the token); Serve shut down after the test."""
    client = serve_submit.connect(cluster.dashboard_url, cluster.token_path)
    yield client
    client.delete_applications()
    deadline = time.time() + 60
    while serve_submit.details(client).get("applications") and time.time() < deadline:
        time.sleep(1)


@pytest.mark.slow
def test_serve_run_config_on_a_local_ray(tmp_path, tiny_artifact):
    port = free_port()
    config = config_file(tmp_path, tiny_artifact, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_ADDRESS"] = "local"  # a new local instance, never another Ray on this machine
    run = subprocess.Popen([SERVE_CLI, "run", str(config)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        assert_is_colour_photo(wait_for_colour(f"http://127.0.0.1:{port}/", process=run))
    finally:
        run.send_signal(signal.SIGINT)  # Ctrl-C: serve run removes the app and stops its Ray
        try:
            run.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deploy", "run"])
def test_serve_config_on_the_loopback_cluster(how, cluster, serve_client, tmp_path, tiny_artifact):
    from colorize.distributed.local_cluster import cluster_env

    port = free_port()
    config = config_file(tmp_path, tiny_artifact, port, name=f"by-{how}")
    env = cluster_env(cluster)  # token auth on, the token's path, Ray kept on 127.0.0.1
    if how == "deploy":  # the REST API on the dashboard, with the token
        command = [SERVE_CLI, "deploy", str(config), "--address", cluster.dashboard_url]
    else:  # a driver joining the cluster
        command = [SERVE_CLI, "run", str(config), "--address", cluster.gcs_address,
                   "--non-blocking"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_is_colour_photo(wait_for_colour(f"http://127.0.0.1:{port}/"))
    app = serve_submit.details(serve_client)["applications"][f"by-{how}"]
    assert app["status"] == "RUNNING"


def model_deployment(app: dict) -> str:
    """The deployment that autoscales (whatever the app's code names it)."""
    (name,) = [name for name, d in app["deployments"].items()
               if d["deployment_config"].get("autoscaling_config")]
    return name


class Load:
    """`workers` threads posting photos back to back: bounded in requests and seconds."""

    def __init__(self, url: str, workers: int = 12, max_requests: int = 100_000,
                 max_seconds: float = 240):
        self.url, self.max_requests = url, max_requests
        self.deadline = time.time() + max_seconds
        self.sent = 0
        self.failures = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(workers)]

    def _run(self) -> None:
        body, _ = png_photo(1)
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set() and time.time() < self.deadline:
                with self.lock:
                    if self.sent >= self.max_requests:
                        return
                    self.sent += 1
                answer = client.post(self.url, content=body, headers={"Content-Type": "image/png"})
                self.failures += answer.status_code != 200

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def replicas_until(client, app_name: str, wanted, timeout_s: float) -> list:
    """Poll Serve's status each second until `wanted(running, target)`; the counts seen."""
    seen = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        app = serve_submit.details(client)["applications"][app_name]
        running, target = serve_submit.replica_counts(app)[model_deployment(app)]
        seen.append((running, target))
        if wanted(running, target):
            break
        time.sleep(1)
    return seen


@pytest.mark.slow
def test_submit_serve_answers_then_autoscales_1_to_2_and_back(cluster, serve_client, tiny_artifact,
                                                              capsys):
    from colorize.artifact import load_artifact
    from colorize.inference import colorize_image

    port = free_port()
    code = main(["submit", "--address", cluster.dashboard_url, "--token-file", cluster.token_path,
                 "serve", str(tiny_artifact), "--replicas", "1-2", "--max-batch-size", "4",
                 "--port", str(port), "--upscale-delay-s", "1", "--downscale-delay-s", "2"])
    printed = capsys.readouterr().out
    assert code == 0
    url = f"http://127.0.0.1:{port}/"
    assert f"endpoint:  POST {url}colorize" in printed

    body, rgb = png_photo()
    answer = httpx.post(f"{url}colorize", content=body, headers={"Content-Type": "image/png"},
                        timeout=60)
    assert answer.status_code == 200, answer.text
    assert_is_colour_photo(answer)
    import io

    from PIL import Image

    expected = colorize_image(load_artifact(tiny_artifact), rgb)  # the shipped code, same model
    result = np.asarray(Image.open(io.BytesIO(answer.content)))
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 2

    app = serve_submit.details(serve_client)["applications"]["colorize"]
    assert app["deployed_app_config"]["runtime_env"]["working_dir"].startswith("gcs://")
    assert main(["jobs", "serve", "--address", cluster.dashboard_url,
                 "--token-file", cluster.token_path]) == 0
    assert "1 of 1 replicas running (autoscaling 1-2)" in capsys.readouterr().out

    # 12 clients (three batches of 4 waiting at a time) until the second replica runs: bounded
    # in time, not requests, since how fast requests go and how soon Serve's metrics show
    # them both depend on what else the machine runs.
    started = time.time()
    with Load(f"{url}colorize") as load:
        grown = replicas_until(serve_client, "colorize", lambda running, _: running == 2, 240)
    assert grown[0] == (1, 1) and grown[-1][0] == 2, (
        f"{load.sent} requests in {time.time() - started:.0f} s; replicas (running, target): {grown}")
    assert load.failures == 0
    shrunk = replicas_until(serve_client, "colorize", lambda running, target: (running, target)
                            == (1, 1), 150)
    assert shrunk[-1] == (1, 1), shrunk

    # Undeploy it: `colorize jobs serve --delete` through the REST API; the endpoint goes away.
    cluster_options = ["--address", cluster.dashboard_url, "--token-file", cluster.token_path]
    assert main(["jobs", "serve", "--delete", "colorize", *cluster_options]) == 0
    assert "deleted Serve application 'colorize'" in capsys.readouterr().out
    assert "colorize" not in (serve_submit.details(serve_client).get("applications") or {})
    assert main(["jobs", "serve", "colorize", *cluster_options]) == 1
    assert "no Serve application 'colorize'" in capsys.readouterr().err


@pytest.mark.slow
def test_submit_serve_refusals_are_one_line(cluster, serve_client, tiny_artifact, tmp_path,
                                            monkeypatch, capsys):
    """No token, a wrong token, a model folder the cluster does not have."""
    base = ["submit", "--address", cluster.dashboard_url]
    # A user without the token: a fresh process (Ray's client adds the token of any cluster
    # this test process has joined), no token variables, a home without ~/.ray/auth_token.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-m", "colorize.cli", *base, "serve",
                          str(tiny_artifact)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1  # a runtime error (the cluster's answer), not a usage error
    assert run.stderr.strip().startswith("colorize: error: the cluster at")
    assert "requires a token" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    monkeypatch.setattr(jobs, "DEFAULT_TOKEN_FILE", tmp_path / "no-token")
    wrong = tmp_path / "token"
    wrong.write_text("0" * 64)
    assert main([*base, "--token-file", str(wrong), "serve", str(tiny_artifact)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("colorize: error: the cluster at") and "refused the token" in err
    assert "\n" not in err

    token = ["--token-file", cluster.token_path]
    assert main([*base, *token, "serve", str(tmp_path / "nope"), "--port", str(free_port()),
                 "--timeout-s", "240"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("colorize: error: Serve application 'colorize' DEPLOY_FAILED: model")
    assert str(tmp_path / "nope") in err and "\n" not in err
