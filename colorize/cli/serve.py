"""`colorize serve MODEL`: run the colorization endpoint (serve/runner.py, serve/app.py).

    colorize serve runs/quickstart/model                 # local Ray, http://127.0.0.1:8000/
    colorize serve MODEL --replicas 1-4 --port 8080      # autoscaling between 1 and 4
    colorize serve MODEL --address auto                  # deploy onto a running cluster
    colorize serve MODEL --hops 1 --ingress direct       # fastest: a port per replica, no proxy hop

Locally it prints the endpoint, web page, API docs and dashboard URLs and serves until
the first Ctrl-C or SIGTERM: then it answers the requests in flight (new ones get a 503
JSON answer), stops Serve and the Ray it started, and exits 130 (SIGINT) or 143
(SIGTERM). With `--address` it deploys onto that cluster and returns (Serve keeps running
there). `colorize.serve.runner.start(model_dir, ...)` does the same from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from colorize.cli.options import choices_metavar
from colorize.errors import UsageError, usage_errors
from colorize.precision import INFERENCE_PRECISIONS
from colorize.serve.runner import (
    APP_NAME,
    INGRESSES,
    connect_for_serving,
    deploy,
    direct_urls,
    serve_until_stopped,
)
from colorize.serve.settings import API_KEY_ENV, Settings, parse_replicas

# Settings fields whose flag shows another unit: flag, and the flag's value per field unit.
IN_OTHER_UNITS = {"batch_wait_timeout_s": ("--batch-wait-ms", 1000.0),
                  "max_upload_bytes": ("--max-upload-mb", 1 / (1024 * 1024))}
NOT_FLAGS = ("model_dir", "min_replicas", "max_replicas")  # MODEL and --replicas give these
# Settings fields with a fixed set of values: shown as {a,b} (Settings refuses others).
CHOICES = {"hops": (1, 2), "precision": INFERENCE_PRECISIONS}


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """One flag per colorize.serve.settings.Settings field, typed, explained by the field's comment
    and defaulting (None: not given) to the dataclass, which states each default once."""
    helps = Settings.field_help()
    parser.add_argument("--replicas", help="N model replicas, or MIN-MAX to autoscale "
                        f"(default: {Settings.min_replicas})")
    for field in dataclasses.fields(Settings):
        if field.name in NOT_FLAGS:
            continue
        flag, factor = IN_OTHER_UNITS.get(field.name, ("--" + field.name.replace("_", "-"), 1))
        kind = {"int": int, "float": float}.get(str(field.type), str)
        default = field.default * factor if isinstance(field.default, (int, float)) else field.default
        extra = f"; or set ${API_KEY_ENV}" if field.name == "api_key" else ""
        shown = f"{default:g}" if isinstance(default, float) else default
        parser.add_argument(flag, dest=field.name, type=float if factor != 1 else kind,
                            default=None, metavar=choices_metavar(CHOICES[field.name])
                            if field.name in CHOICES else flag[2:].upper().replace("-", "_"),
                            help=f"{helps[field.name]} (default: {shown}{extra})")


def settings_values(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields the flags gave (in the fields' own units), with MODEL."""
    values: dict[str, Any] = {"model_dir": str(args.model)}
    if args.replicas is not None:
        values["min_replicas"], values["max_replicas"] = parse_replicas(args.replicas)
    for field in dataclasses.fields(Settings):
        value = getattr(args, field.name, None)
        if field.name in NOT_FLAGS or value is None:
            continue
        factor = IN_OTHER_UNITS.get(field.name, (None, 1))[1]
        value = value / factor if factor != 1 else value
        values[field.name] = int(value) if str(field.type) == "int" else value
    return values


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve", help="serve a model over HTTP on Ray Serve (web page, batching, autoscaling)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="model folder (written by fit or train), or 'pretrained' (the model that ships with colorize)")
    add_settings_options(p)
    p.add_argument("--ingress", choices=INGRESSES, default="proxy",
                   help="proxy: Ray Serve's HTTP proxy answers on --port for every replica; "
                        "direct: each ingress replica also answers on its own port above it, "
                        "without the proxy hop (less CPU a request; local Ray only) (default: proxy)")
    p.add_argument("--address", help="Ray cluster to deploy onto ('auto', 'ray://HOST:10001'); "
                   "default: start a local Ray")
    p.add_argument("--dashboard-port", type=int,
                   help="Ray dashboard port (local Ray only; default: Ray's own)")
    p.set_defaults(func=_cmd_serve)
    return p


def _cmd_serve(args: argparse.Namespace) -> int:
    from colorize.artifact import read_metadata

    with usage_errors():  # --replicas 4-1, a bad setting: the options themselves
        values = settings_values(args)
        settings = Settings.from_dict(values)
    if args.ingress == "direct" and args.address:
        raise UsageError("--ingress direct needs the local Ray this command starts (Ray reads "
                         "the setting when it starts): leave out --address, or on a cluster start "
                         "Ray with RAY_SERVE_ENABLE_DIRECT_INGRESS=1 instead")
    if not args.address:
        read_metadata(settings.model_dir)  # a wrong folder fails before Ray starts
    started, dashboard = connect_for_serving(args.address, ingress=args.ingress, port=settings.port,
                                             dashboard_port=args.dashboard_port)
    url = deploy(settings)
    print(f"endpoint:  POST {url}colorize\nweb page:  {url}\nAPI docs:  {url}docs")
    if args.ingress == "direct":
        urls = direct_urls(settings)
        print(f"direct:    POST {urls[0]}colorize (no proxy hop; one URL per replica: {', '.join(urls)})")
    print(f"dashboard: {dashboard or 'see the Ray cluster'}", flush=True)
    if args.address:
        print("deployed onto the cluster; it keeps serving after this command returns")
        return 0
    print("serving until Ctrl-C", flush=True)
    signum = serve_until_stopped(APP_NAME, started)
    print(f"stopped; serve the model again with: colorize serve {args.model}", flush=True)
    return 128 + signum
