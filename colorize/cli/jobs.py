"""`colorize submit` and `colorize jobs`: colorize commands as Ray jobs on a cluster, and
`colorize submit serve`, the endpoint deployed onto one (colorize/jobs.py and
colorize/serve_submit.py do the work)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from colorize import compat
from colorize.errors import ColorizeError
from colorize.jobs import (
    SUBMITTABLE,
    _cluster_errors,
    _job_failed,
    connect,
    follow_logs,
    job_url,
    submit,
)

# `colorize serve` options that make no sense for a deployment onto a running cluster.
LOCAL_ONLY = ("address", "dashboard_port")


def _cmd_submit(args: argparse.Namespace) -> int:
    if not args.verbose:  # Ray's packaging chatter (files ignored, upload) stays off the console
        logging.getLogger("ray").setLevel(logging.ERROR)
    if args.job_command == "serve":  # a Serve deployment, not a job
        return _submit_serve(args)
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


def _options_parser() -> argparse.ArgumentParser:
    """Options of `submit serve` beyond those of `colorize serve` (which it also takes)."""
    p = argparse.ArgumentParser(prog="colorize submit serve", add_help=False)
    p.add_argument("--name", default="colorize", help="Serve application name")
    p.add_argument("--route-prefix", default="/")
    p.add_argument("--upscale-delay-s", type=float)
    p.add_argument("--downscale-delay-s", type=float)
    p.add_argument("--timeout-s", type=float, default=300.0)
    return p


def settings_args(serve_args: argparse.Namespace) -> dict:
    """`colorize serve`'s parsed options as Settings fields (only those given or needed)."""
    from colorize.cli.serve import settings_values
    from colorize.serve.settings import Settings

    for option in LOCAL_ONLY:
        if getattr(serve_args, option, None) is not None:
            raise ColorizeError(f"--{option.replace('_', '-')} is not for `submit serve` "
                                "(it deploys onto the cluster of --address/$RAY_API_SERVER_ADDRESS)")
    values = settings_values(serve_args)  # the API key, unless given: $COLORIZE_API_KEY there
    for name in ("host", "port"):  # the cluster's http_options are set from these
        values.setdefault(name, getattr(Settings, name))
    return values


def _submit_serve(args: argparse.Namespace) -> int:
    """`colorize submit [--address] [--token-file] [--no-ship] serve MODEL [options]`."""
    from colorize import serve_submit
    from colorize.cli import serve

    extra, rest = _options_parser().parse_known_args(args.job_args)
    parser = argparse.ArgumentParser(prog="colorize")  # `colorize serve`'s own options
    serve.register(parser.add_subparsers(dest="command", required=True))
    serve_args = parser.parse_args(["serve", *rest])
    values = settings_args(serve_args)
    client = serve_submit.connect(args.address, args.token_file)
    if not args.verbose:  # importing Ray set these loggers' levels: quiet the upload chatter now
        for name in ("ray", "ray.dashboard.modules.dashboard_sdk"):
            logging.getLogger(name).setLevel(logging.ERROR)
    url = serve_submit.submit(client, values, name=extra.name, route_prefix=extra.route_prefix,
                 host=values["host"], port=values["port"], ship=not args.no_ship,
                 upscale_delay_s=extra.upscale_delay_s,
                 downscale_delay_s=extra.downscale_delay_s, timeout_s=extra.timeout_s)
    print(f"endpoint:  POST {url}colorize\nweb page:  {url}\n"
          f"status:    colorize jobs serve {extra.name}")
    return 0
