"""`colorize submit` and `colorize jobs`: run colorize commands as Ray jobs on a cluster.

    colorize submit tune --data sample --storage /shared/experiments --name run1 --follow
    colorize submit serve /shared/runs/run1/model --replicas 1-4    # see colorize.serve_submit
    colorize jobs list | status JOB | logs JOB [--follow] | stop JOB | serve [APP]

Everything goes through Ray's Jobs API (`JobSubmissionClient`) on the cluster's dashboard.
The address comes from --address, else $RAY_API_SERVER_ADDRESS, else an http(s) $RAY_ADDRESS;
the token from --token-file, else Ray's own variables ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH),
else ~/.ray/auth_token, and travels as an `Authorization: Bearer` header. A submitted job runs
`python -m colorize.cli COMMAND ARGS` with this source tree as its runtime working_dir, so the
cluster runs the code you have; paths in ARGS are read on the cluster (use shared storage).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from colorize import compat
from colorize.errors import ColorizeError

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
        raise ColorizeError(
            "no cluster address: give --address http://HOST:8265 or set RAY_API_SERVER_ADDRESS "
            "(colorize cluster up prints it)"
        )
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
    with _cluster_errors(url):
        return client_class(url, headers=headers)


@contextmanager
def _cluster_errors(url: str):
    """Turn the Jobs API's connection, auth and request errors into one-line ColorizeErrors."""
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
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise ColorizeError(f"the Jobs API at {url} said: {lines[0] if lines else exc!r}") from None


def runtime_env(ship: bool = True) -> dict:
    """Ship this source tree (or the installed packages) with the job; quiet TensorFlow."""
    env: dict = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}}
    if not ship:
        return env
    import colorize

    root = Path(colorize.__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        env.update(working_dir=str(root), excludes=SHIP_EXCLUDES)
    else:  # installed from a wheel: ship the packages themselves
        import serve
        import tune

        env["py_modules"] = [str(Path(m.__file__).parent) for m in (colorize, tune, serve)]
    return env


def entrypoint(command: str, args: list[str]) -> str:
    """The job's shell command: `python -m colorize.cli COMMAND ARGS` (quoted)."""
    if command not in SUBMITTABLE:
        raise ColorizeError(f"cannot submit {command!r}: choose one of {', '.join(SUBMITTABLE)}")
    if command in JOINS_CLUSTER and not any(a.split("=")[0] == "--address" for a in args):
        args = [*args, "--address", "auto"]  # the job's own cluster, not a new local Ray
    return shlex.join(["python", "-m", "colorize.cli", command, *args])


def submit(client, command: str, args: list[str], ship: bool = True,
           submission_id: str | None = None) -> str:
    """Submit `colorize COMMAND ARGS` as a job; returns its submission id."""
    with _cluster_errors(compat.client_address(client)):
        return client.submit_job(entrypoint=entrypoint(command, args),
                                 runtime_env=runtime_env(ship),
                                 submission_id=submission_id,
                                 metadata={"colorize_command": command})


def job_url(client, job_id: str) -> str:
    """The job's page in the Ray dashboard."""
    return f"{compat.client_address(client)}/#/jobs/{job_id}"


def follow_logs(client, job_id: str, out=sys.stdout) -> str:
    """Print the job's logs as they come until it ends; returns its final status."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    from colorize import signals

    with _cluster_errors(compat.client_address(client)), signals.stage(
        f"following job {job_id}", f"the job keeps running on the cluster (colorize jobs logs "
        f"{job_id} --follow follows it again, colorize jobs stop {job_id} stops it)"):
        asyncio.run(tail())
        return wait(client, job_id, timeout_s=30)


def wait(client, job_id: str, timeout_s: float = 600, poll_s: float = 1.0) -> str:
    """Poll until the job ends (or the timeout passes); returns its status."""
    deadline = time.time() + timeout_s
    with _cluster_errors(compat.client_address(client)):
        while True:
            status = str(client.get_job_status(job_id).value)
            if status in TERMINAL or time.time() > deadline:
                return status
            time.sleep(poll_s)


def _job_failed(client, job_id: str, status: str) -> ColorizeError:
    info = client.get_job_info(job_id)
    reason = (info.message or "").strip().splitlines()
    return ColorizeError(f"job {job_id} {status}: {reason[-1] if reason else 'no message'} "
                         f"(colorize jobs logs {job_id})")


def _cmd_submit(args: argparse.Namespace) -> int:
    if not args.verbose:  # Ray's packaging chatter (files ignored, upload) stays off the console
        logging.getLogger("ray").setLevel(logging.ERROR)
    if args.job_command == "serve":  # a Serve deployment, not a job
        from colorize.serve_submit import run_from_cli

        return run_from_cli(args)
    client = connect(args.address, args.token_file)
    job_id = submit(client, args.job_command, args.job_args, ship=not args.no_ship,
                    submission_id=args.job_id)
    print(f"job: {job_id}\ndashboard: {job_url(client, job_id)}", flush=True)
    if not args.follow:
        print(f"follow it: colorize jobs logs {job_id} --follow")
        return 0
    status = follow_logs(client, job_id)
    print(f"job {job_id}: {status}")
    if status != "SUCCEEDED":
        raise _job_failed(client, job_id, status)
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    if args.action == "serve":
        from colorize import serve_submit

        client = serve_submit.connect(args.address, args.token_file)
        print("\n".join(serve_submit.status_lines(serve_submit.details(client), args.job)))
        return 0
    client = connect(args.address, args.token_file)
    with _cluster_errors(compat.client_address(client)):
        if args.action == "list":
            jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
            print(f"{'job':30} {'status':10} {'started':20} entrypoint")
            for job in jobs:
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000))
                print(f"{job.submission_id or job.job_id:30} {job.status.value:10} {started:20} "
                      f"{job.entrypoint[:60]}")
            return 0
        if not args.job:
            raise ColorizeError(f"`colorize jobs {args.action}` needs a job id (see `colorize jobs list`)")
        if args.action == "status":
            info = client.get_job_info(args.job)
            print(f"job: {args.job}\nstatus: {info.status.value}\nentrypoint: {info.entrypoint}")
            if info.message:
                print(f"message: {info.message.strip()}")
            print(f"dashboard: {job_url(client, args.job)}")
        elif args.action == "logs":
            if args.follow:
                print(f"job {args.job}: {follow_logs(client, args.job)}")
            else:
                sys.stdout.write(client.get_job_logs(args.job))
        else:
            stopped = client.stop_job(args.job)
            print(f"job {args.job}: {'stop requested' if stopped else 'not running'}")
    return 0


def _cluster_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("cluster")
    group.add_argument("--address", help="the cluster's dashboard, e.g. http://127.0.0.1:8265 "
                       "(default: $RAY_API_SERVER_ADDRESS)")
    group.add_argument("--token-file", type=Path, help="file holding the cluster's auth token "
                       "(default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)")
    return common


def register(subparsers) -> None:
    common = _cluster_options()
    sub = subparsers.add_parser(
        "submit", parents=[common],
        help="run tune, train or fit as a job on a Ray cluster, or serve a model on it",
        description="Submit `colorize COMMAND ARGS...` to a Ray cluster through its Jobs API. "
        "Paths in ARGS are read on the cluster: use storage every node sees.")
    sub.add_argument("--follow", action="store_true", help="print the job's logs until it ends")
    sub.add_argument("--no-ship", action="store_true",
                     help="use the colorize installed on the cluster instead of shipping this tree")
    sub.add_argument("--job-id", help="submission id to use (default: Ray picks one)")
    sub.add_argument("job_command", metavar="COMMAND", choices=(*SUBMITTABLE, "serve"),
                     help=f"one of {', '.join(SUBMITTABLE)} (a job), or serve (a Serve "
                     "deployment: serve MODEL_DIR with `colorize serve`'s options and --name, "
                     "--route-prefix, --upscale-delay-s, --downscale-delay-s, --timeout-s)")
    sub.add_argument("job_args", metavar="ARGS", nargs=argparse.REMAINDER,
                     help="the command's own options (see colorize COMMAND --help)")
    sub.set_defaults(func=_cmd_submit)

    jobs = subparsers.add_parser("jobs", parents=[common], help="list, inspect, follow or stop "
                                 "jobs; `jobs serve` shows the Serve applications")
    jobs.add_argument("action", choices=("list", "status", "logs", "stop", "serve"))
    jobs.add_argument("job", nargs="?", help="job (submission) id; with serve: an application")
    jobs.add_argument("--follow", action="store_true", help="with logs: follow until the job ends")
    jobs.set_defaults(func=_cmd_jobs)
