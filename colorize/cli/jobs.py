"""`colorize submit` and `colorize jobs`: colorize commands as Ray jobs on a cluster, and
`colorize submit serve`, the endpoint deployed onto one (colorize/distributed/jobs.py and
colorize/distributed/serve_submit.py do the work).

    colorize submit [--address URL] [--token-file FILE] [--follow] [--no-ship] [--job-id ID] \
        {tune,train,fit,serve} [--] ARGS...

submit's own options go before the command; everything after the command is the command's
own (ARGS). One of submit's options found among ARGS (`colorize submit tune ... --follow`)
is refused in one line, saying to put it before the command; a `--` right after the command
passes ARGS on exactly as written, even one that looks like submit's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from colorize.distributed import ray_compat
from colorize.distributed.jobs import (
    SUBMITTABLE,
    _job_failed,
    cluster_errors,
    connect,
    follow_logs,
    job_url,
    submit,
)
from colorize.errors import UsageError, usage_errors

# `colorize serve` options that make no sense for a deployment onto a running cluster.
LOCAL_ONLY = ("address", "dashboard_port")
COMMANDS = (*SUBMITTABLE, "serve")
# submit's own options, never a submitted command's: found among ARGS, they were misplaced.
SUBMIT_ONLY = ("--follow", "--no-ship", "--job-id", "--token-file")
# ... and --address too after a command that has none of its own (the cluster is submit's).
NO_ADDRESS = ("fit", "serve")
SHOWN = {"--job-id": "--job-id ID", "--token-file": "--token-file FILE", "--address": "--address URL"}


def split_job(words: list[str]) -> tuple[str, list[str]]:
    """`[--] COMMAND [--] ARGS...` (what follows submit's own options) -> (COMMAND, ARGS).
    A submit option among ARGS is a usage error, unless a `--` right after COMMAND says
    ARGS are to be passed on as written."""
    if words[:1] == ["--"]:
        words = words[1:]
    if not words:
        raise UsageError("give the command to submit: colorize submit [options] "
                         f"{{{','.join(COMMANDS)}}} [--] ARGS...")
    command, args = words[0], words[1:]
    if command not in COMMANDS:
        hint = (f" (submit's own options go before the command: {command} is not one of them)"
                if command.startswith("-") else "")
        raise UsageError(f"cannot submit {command!r}: choose one of {', '.join(COMMANDS)}{hint}")
    if args[:1] == ["--"]:
        return command, args[1:]
    ours = SUBMIT_ONLY + (("--address",) if command in NO_ADDRESS else ())
    for word in args:
        if word == "--":  # the rest is the command's own, as written
            break
        option = word.split("=", 1)[0]
        if option in ours:
            raise UsageError(
                f"{option} is an option of `colorize submit`, not of `colorize {command}`: put "
                f"it before the command (colorize submit {SHOWN.get(option, option)} {command} ...)")
    return command, args


def _cmd_submit(args: argparse.Namespace) -> int:
    if not args.verbose:  # Ray's packaging chatter (files ignored, upload) stays off the console
        logging.getLogger("ray").setLevel(logging.ERROR)
    args.job_command, args.job_args = split_job(args.job)
    if args.job_command == "serve":  # a Serve deployment, not a job
        for option, given in (("--follow", args.follow), ("--job-id", args.job_id)):
            if given:
                raise UsageError(f"{option} is for jobs: `submit serve` deploys an application "
                                 "and waits until it runs (see it with `colorize jobs serve`)")
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
    if args.follow and args.action != "logs":
        raise UsageError(f"--follow goes with `colorize jobs logs JOB`, not `jobs {args.action}`")
    if args.delete and args.action != "serve":
        raise UsageError(f"--delete goes with `colorize jobs serve APP`, not `jobs {args.action}`")
    if args.action == "serve":
        from colorize.distributed import serve_submit

        if args.delete and args.job and args.job != args.delete:
            raise UsageError(f"give one application: `colorize jobs serve --delete {args.delete}` "
                             f"removes {args.delete!r}, and {args.job!r} was named too")
        client = serve_submit.connect(args.address, args.token_file)
        if args.delete:
            left = serve_submit.delete(client, args.delete, timeout_s=args.timeout_s)
            print(f"deleted Serve application {args.delete!r}; "
                  f"{'still deployed: ' + ', '.join(left) if left else 'none left on the cluster'}")
            return 0
        print("\n".join(serve_submit.status_lines(serve_submit.details(client), args.job)))
        return 0
    client = connect(args.address, args.token_file)
    with cluster_errors(ray_compat.client_address(client)):
        if args.action == "list":
            jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
            print(f"{'job':30} {'status':10} {'started':20} entrypoint")
            for job in jobs:
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000))
                print(f"{job.submission_id or job.job_id:30} {job.status.value:10} {started:20} "
                      f"{job.entrypoint[:60]}")
            return 0
        if not args.job:
            raise UsageError(f"`colorize jobs {args.action}` needs a job id (see `colorize jobs list`)")
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
                       "(default: $RAY_API_SERVER_ADDRESS, else an http(s) $RAY_ADDRESS)")
    group.add_argument("--token-file", type=Path, help="file holding the cluster's auth token "
                       "(default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)")
    return common


def register(subparsers) -> None:
    common = _cluster_options()
    sub = subparsers.add_parser(
        "submit", parents=[common],
        usage="colorize submit [-h] [--address ADDRESS] [--token-file TOKEN_FILE] [--follow] "
              f"[--no-ship] [--job-id JOB_ID] {{{','.join(COMMANDS)}}} [--] ARGS...",
        help="run tune, train or fit as a job on a Ray cluster, or serve a model on it",
        description="Submit `colorize COMMAND ARGS...` to a Ray cluster through its Jobs API. "
        "submit's own options go before COMMAND; everything after COMMAND is the command's "
        "(a `--` right after COMMAND passes ARGS on exactly as written). Paths in ARGS are "
        "read on the cluster: use storage every node sees.")
    sub.add_argument("--follow", action="store_true", help="print the job's logs until it ends "
                     "(then exit 1 unless it SUCCEEDED)")
    sub.add_argument("--no-ship", action="store_true",
                     help="use the colorize installed on the cluster instead of shipping this tree")
    sub.add_argument("--job-id", help="submission id to use (default: Ray picks one)")
    sub.add_argument("job", metavar="COMMAND [--] ARGS", nargs=argparse.REMAINDER,
                     help=f"COMMAND: one of {{{','.join(SUBMITTABLE)}}} (a job), or serve (a Serve "
                     "deployment: serve MODEL_DIR with `colorize serve`'s options and --name, "
                     "--route-prefix, --upscale-delay-s, --downscale-delay-s, --timeout-s; see "
                     "`colorize submit serve --help`); ARGS: the command's own options (see "
                     "colorize COMMAND --help)")
    sub.set_defaults(func=_cmd_submit)

    jobs = subparsers.add_parser("jobs", parents=[common], help="list, inspect, follow or stop "
                                 "jobs; `jobs serve` shows the Serve applications, `jobs serve "
                                 "--delete APP` removes one")
    jobs.add_argument("action", choices=("list", "status", "logs", "stop", "serve"),
                      help="list: every job; status, logs, stop: the job JOB; serve: the "
                      "cluster's Serve applications (or APP's); serve --delete APP: remove APP")
    jobs.add_argument("job", nargs="?", metavar="JOB|APP",
                      help="job (submission) id; with serve: a Serve application's name")
    jobs.add_argument("--follow", action="store_true", help="with logs: follow until the job ends")
    jobs.add_argument("--delete", metavar="APP",
                      help="with serve: remove the Serve application APP (as deployed by "
                      "`colorize submit serve --name APP`; default name colorize), keeping the "
                      "others")
    jobs.add_argument("--timeout-s", type=float, default=120.0,
                      help="with serve --delete: seconds to wait until APP is gone (default 120)")
    jobs.set_defaults(func=_cmd_jobs)


def _serve_parser() -> argparse.ArgumentParser:
    """`colorize submit serve MODEL_DIR`'s options: `colorize serve`'s and those of a
    deployment onto a cluster (`colorize submit serve --help` lists both)."""
    from colorize.cli import serve
    from colorize.cli.options import refuse_abbreviations

    parser = argparse.ArgumentParser(prog="colorize submit")
    p = serve.register(parser.add_subparsers(dest="command", required=True))
    p.description = ("Deploy `colorize serve MODEL_DIR` onto the cluster of submit's --address\n"
                     "through Serve's REST API; it keeps serving after this command returns\n"
                     "(`colorize jobs serve` shows it, `colorize jobs serve --delete NAME`\n"
                     "removes it).")
    group = p.add_argument_group("the deployment on the cluster")
    group.add_argument("--name", default="colorize",
                       help="Serve application name (default colorize); deploy several models "
                       "side by side under different names and --route-prefix")
    group.add_argument("--route-prefix", default="/",
                       help="the application's route on Serve's HTTP port (default /)")
    group.add_argument("--upscale-delay-s", type=float,
                       help="seconds of high load before Serve adds a model replica "
                       "(default: Serve's)")
    group.add_argument("--downscale-delay-s", type=float,
                       help="seconds of low load before Serve removes a model replica "
                       "(default: Serve's)")
    group.add_argument("--timeout-s", type=float, default=300.0,
                       help="seconds to wait until the application runs (default 300)")
    refuse_abbreviations(parser)
    return parser


def settings_args(serve_args: argparse.Namespace) -> dict:
    """`colorize serve`'s parsed options as Settings fields (only those given or needed)."""
    from colorize.cli.serve import settings_values
    from colorize.serve.settings import Settings

    for option in LOCAL_ONLY:
        if getattr(serve_args, option, None) is not None:
            raise UsageError(f"--{option.replace('_', '-')} is not for `submit serve` "
                             "(it deploys onto the cluster of submit's --address, given before "
                             "serve, or $RAY_API_SERVER_ADDRESS)")
    with usage_errors():
        values = settings_values(serve_args)  # the API key, unless given: $COLORIZE_API_KEY there
        for name in ("host", "port"):  # the cluster's http_options are set from these
            values.setdefault(name, getattr(Settings, name))
        Settings.from_dict(values)  # a bad setting fails here, before anything is uploaded
    return values


def _submit_serve(args: argparse.Namespace) -> int:
    """`colorize submit [--address] [--token-file] [--no-ship] serve MODEL [options]`."""
    from colorize.distributed import serve_submit

    extra = serve_args = _serve_parser().parse_args(["serve", *args.job_args])
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
