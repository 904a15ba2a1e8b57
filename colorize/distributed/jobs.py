"""`colorize submit` and `colorize jobs`: run colorize commands as Ray jobs on a cluster.

    colorize submit tune --data sample --storage /shared/experiments --name run1 --follow
    colorize submit serve /shared/runs/run1/model --replicas 1-4    # see colorize.distributed.serve_submit
    colorize jobs list | status JOB | logs JOB [--follow] | stop JOB | serve [APP]

Everything goes through Ray's Jobs API (`JobSubmissionClient`) on the cluster's dashboard.
The address comes from --address, else $RAY_API_SERVER_ADDRESS, else an http(s) $RAY_ADDRESS;
the token from --token-file, else Ray's own variables ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH),
else ~/.ray/auth_token, and travels as an `Authorization: Bearer` header. A submitted job runs
`python -m colorize.cli COMMAND ARGS` with this source tree as its runtime working_dir, so the
cluster runs the code you have; paths in ARGS are read on the cluster (use shared storage).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from colorize.distributed import ray_compat
from colorize.errors import ColorizeError, UsageError

SUBMITTABLE = ("tune", "train", "fit")
JOINS_CLUSTER = ("tune", "train")  # commands with --address: in a job they must join the cluster
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"
# Not shipped with a job: environments, outputs, caches, and what only developers need.
SHIP_EXCLUDES = [".git", ".venv", "runs", "out", "bench", "tests", "**/__pycache__",
                 "*.egg-info", ".colorize-cache", "*.keras", ".pytest_cache", ".ruff_cache"]


def dashboard_address(address: str | None = None) -> str:
    """The Jobs API address as an http URL (a bare host:port gets http://)."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address and os.environ.get("RAY_ADDRESS", "").startswith(("http://", "https://")):
        address = os.environ["RAY_ADDRESS"]
    if not address:
        raise UsageError(
            "no cluster address: give --address http://HOST:8265 or set RAY_API_SERVER_ADDRESS "
            "(colorize cluster up prints it)"
        )
    if address.startswith("ray://"):
        raise UsageError(f"--address {address} is a Ray Client address: give the cluster's "
                         "dashboard instead, e.g. http://HOST:8265 (the Jobs and Serve APIs are there)")
    if "://" not in address:
        address = "http://" + address
    return address.rstrip("/")


def read_token(token_file: str | Path | None = None) -> str | None:
    """The cluster's auth token: --token-file, $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray."""
    if token_file is None and os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = token_file or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path is None:
        return DEFAULT_TOKEN_FILE.read_text().strip() if DEFAULT_TOKEN_FILE.is_file() else None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ColorizeError(f"cannot read the auth token file {path}: {exc.strerror}") from None


def connect(address: str | None = None, token_file: str | Path | None = None):
    """A JobSubmissionClient for the cluster, with the token; clear errors when refused."""
    from ray.job_submission import JobSubmissionClient

    return open_client(JobSubmissionClient, address, token_file)


def open_client(client_class, address: str | None = None, token_file: str | Path | None = None):
    """A Ray dashboard client of `client_class` (jobs, Serve) on the cluster, with the token."""
    url = dashboard_address(address)
    token = read_token(token_file)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with cluster_errors(url):
        try:
            return client_class(url, headers=headers)
        except ValueError as exc:  # Ray's clients refuse a ray:// or malformed address
            if _is_request_error(exc):  # a reply that is not JSON: not the address's fault
                raise
            raise UsageError(f"--address {url}: {first_line(exc)} (give the cluster's "
                             "dashboard, e.g. http://HOST:8265)") from None


def _is_request_error(exc: Exception) -> bool:
    import requests

    return isinstance(exc, requests.RequestException)


MAX_MESSAGE = 300  # characters of a cluster's answer quoted in an error (an HTML page, say)


def first_line(exc_or_text) -> str:
    """The first non-empty line of an error or a reply, cut to MAX_MESSAGE characters."""
    lines = [line.strip() for line in str(exc_or_text).strip().splitlines() if line.strip()]
    text = lines[0] if lines else repr(exc_or_text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


@contextmanager
def cluster_errors(url: str):
    """Turn every error talking to the cluster's dashboard (connection, auth, an HTTP error
    status, Ray's clients' RuntimeErrors) into a one-line ColorizeError: never a traceback."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        text = str(exc)  # Ray words a 403 "Authentication failed", a 401 "... required"
        refused = "refused the token" if "Authentication failed" in text else "requires a token"
        raise ColorizeError(
            f"the cluster at {url} {refused}: set RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN, or "
            "--token-file) to the cluster's token", status=401) from None
    except (ConnectionError, requests.ConnectionError, requests.Timeout):
        raise ColorizeError(f"no Ray dashboard answers at {url} (is the cluster up?)",
                            status=503) from None
    except requests.HTTPError as exc:  # raise_for_status() on a reply of ours
        reply = exc.response
        said = f": {first_line(reply.text)}" if reply is not None and reply.text.strip() else ""
        code = f"HTTP {reply.status_code} {reply.reason}" if reply is not None else "an error"
        raise ColorizeError(f"the cluster at {url} answered {code}{said}", status=502) from None
    except requests.RequestException as exc:  # a reply that is not JSON, a bad URL, ...
        raise ColorizeError(f"the request to the cluster at {url} failed: {first_line(exc)}",
                            status=502) from None
    except RuntimeError as exc:  # Ray's dashboard clients: "Request failed with status code N"
        raise ColorizeError(f"the cluster at {url} answered: {first_line(exc)}",
                            status=502) from None


def runtime_env(ship: bool = True) -> dict:
    """Ship this source tree (or the installed packages) with the job; quiet TensorFlow."""
    env: dict = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}}
    if not ship:
        return env
    import colorize

    root = Path(colorize.__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        env.update(working_dir=str(root), excludes=SHIP_EXCLUDES)
    else:  # installed from a wheel: ship the package itself (colorize.tune, colorize.serve inside)
        env["py_modules"] = [str(Path(colorize.__file__).parent)]
    return env


def entrypoint(command: str, args: list[str]) -> str:
    """The job's shell command: `python -m colorize.cli COMMAND ARGS` (quoted)."""
    if command not in SUBMITTABLE:
        raise UsageError(f"cannot submit {command!r}: choose one of {', '.join(SUBMITTABLE)}")
    if command in JOINS_CLUSTER and not any(a.split("=")[0] == "--address" for a in args):
        args = [*args, "--address", "auto"]  # the job's own cluster, not a new local Ray
    return shlex.join(["python", "-m", "colorize.cli", command, *args])


def submit(client, command: str, args: list[str], ship: bool = True,
           submission_id: str | None = None) -> str:
    """Submit `colorize COMMAND ARGS` as a job; returns its submission id."""
    with cluster_errors(ray_compat.client_address(client)):
        return client.submit_job(entrypoint=entrypoint(command, args),
                                 runtime_env=runtime_env(ship),
                                 submission_id=submission_id,
                                 metadata={"colorize_command": command})


def job_url(client, job_id: str) -> str:
    """The job's page in the Ray dashboard."""
    return f"{ray_compat.client_address(client)}/#/jobs/{job_id}"


def follow_logs(client, job_id: str, out=sys.stdout) -> str:
    """Print the job's logs as they come until it ends; returns its final status."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    from colorize import signals

    with cluster_errors(ray_compat.client_address(client)), signals.stage(
        f"following job {job_id}", f"the job keeps running on the cluster (colorize jobs logs "
        f"{job_id} --follow follows it again, colorize jobs stop {job_id} stops it)"):
        asyncio.run(tail())
        return wait(client, job_id, timeout_s=30)


def wait(client, job_id: str, timeout_s: float = 600, poll_s: float = 1.0) -> str:
    """Poll until the job ends (or the timeout passes); returns its status."""
    deadline = time.time() + timeout_s
    with cluster_errors(ray_compat.client_address(client)):
        while True:
            status = str(client.get_job_status(job_id).value)
            if status in TERMINAL or time.time() > deadline:
                return status
            time.sleep(poll_s)


def _job_failed(client, job_id: str, status: str) -> ColorizeError:
    with cluster_errors(ray_compat.client_address(client)):
        info = client.get_job_info(job_id)
    reason = (info.message or "").strip().splitlines()
    return ColorizeError(f"job {job_id} {status}: {reason[-1] if reason else 'no message'} "
                         f"(colorize jobs logs {job_id})")
