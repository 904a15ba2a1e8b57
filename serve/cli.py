"""`colorize serve MODEL`: run the colorization endpoint, and `start()` for other commands.

    colorize serve runs/quickstart/model                 # local Ray, http://127.0.0.1:8000/
    colorize serve MODEL --replicas 1-4 --port 8080      # autoscaling between 1 and 4
    colorize serve MODEL --address auto                  # deploy onto a running cluster

Locally it prints the endpoint, web page, API docs and dashboard URLs and serves until
Ctrl-C. With `--address` it deploys onto that cluster and returns (Serve keeps running
there). `start(model_dir, ...)` does the same from Python and returns the endpoint URL.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path
from typing import Any

from colorize.ray_session import connect
from serve.settings import API_KEY_ENV, Settings, parse_replicas

log = logging.getLogger(__name__)
APP_NAME = "colorize"


def start(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int | str = 1,
    blocking: bool = False,
    *,
    name: str = APP_NAME,
    route_prefix: str = "/",
    address: str | None = None,
    **options: Any,
) -> str:
    """Deploy the endpoint and return its base URL (e.g. 'http://127.0.0.1:8000/').

    Starts a local Ray instance (address "local") unless Ray is already initialised or an
    `address` is given ("auto", "ray://..."). `replicas` is N or "MIN-MAX" (autoscaling);
    `options` are further `Settings` fields (max_batch_size, api_key, ...). When Serve
    already runs on the cluster its HTTP host and port stay as they are and the URL says
    so. `blocking=True` serves until Ctrl-C, then removes the application.
    """
    low, high = parse_replicas(str(replicas))
    settings = Settings.from_dict({
        "model_dir": str(model_dir), "host": host, "port": port,
        "min_replicas": low, "max_replicas": high, **options,
    })
    connect(address)
    url = deploy(settings, name=name, route_prefix=route_prefix)
    if blocking:
        log.info("serving %s at %s (Ctrl-C stops)", settings.model_dir, url)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            from ray import serve

            serve.delete(name)
    return url


def deploy(settings: Settings, name: str = APP_NAME, route_prefix: str = "/") -> str:
    """Start Serve's HTTP proxy (bound to settings.host) and run the application on it."""
    from ray import serve

    from serve.app import build_app

    app = build_app(settings)  # checks the artifact first: one clear line if it is not one
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(app, name=name, route_prefix=route_prefix, blocking=False)
    host, port = _http_address(settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}/"


def _http_address(settings: Settings) -> tuple[str, int]:
    """The proxy's real host and port (Serve keeps its first ones if it was running)."""
    try:
        from ray.serve.context import _get_global_client

        config = _get_global_client().http_config
        return config.host, int(config.port)
    except Exception:  # a private API; fall back to what was asked for
        return settings.host, settings.port


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve a model over HTTP on Ray Serve (web page, batching, autoscaling)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="model folder (written by fit or train)")
    p.add_argument("--replicas", default="1", help="N model replicas, or MIN-MAX to autoscale")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--address", help="Ray cluster to deploy onto ('auto', 'ray://HOST:10001')")
    p.add_argument("--max-batch-size", type=int, default=16, help="1 turns batching off")
    p.add_argument("--batch-wait-ms", type=float, default=20.0)
    p.add_argument("--max-upload-mb", type=float, default=20.0)
    p.add_argument("--max-pixels", type=int, help="refuse larger images (default 50 million)")
    p.add_argument("--api-key", help=f"require this X-API-Key header (or set ${API_KEY_ENV})")
    p.add_argument("--cpus-per-replica", type=float, default=1.0)
    p.add_argument("--gpus-per-replica", type=float, default=0.0)
    p.add_argument("--dashboard-port", type=int, help="Ray dashboard port (local Ray only)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from colorize.artifact import read_metadata

    low, high = parse_replicas(args.replicas)
    values: dict[str, Any] = {
        "model_dir": str(args.model), "host": args.host, "port": args.port,
        "min_replicas": low, "max_replicas": high, "max_batch_size": args.max_batch_size,
        "batch_wait_timeout_s": args.batch_wait_ms / 1000.0,
        "max_upload_bytes": int(args.max_upload_mb * 1024 * 1024), "api_key": args.api_key,
        "cpus_per_replica": args.cpus_per_replica, "gpus_per_replica": args.gpus_per_replica,
    }
    if args.max_pixels:
        values["max_pixels"] = args.max_pixels
    settings = Settings.from_dict(values)
    if not args.address:
        read_metadata(settings.model_dir)  # a wrong folder fails before Ray starts
    dashboard = connect(args.address, dashboard_port=args.dashboard_port)[1]
    url = deploy(settings)
    print(f"endpoint:  POST {url}colorize\nweb page:  {url}\nAPI docs:  {url}docs")
    print(f"dashboard: {dashboard or 'see the Ray cluster'}", flush=True)
    if args.address:
        print("deployed onto the cluster; it keeps serving after this command returns")
        return 0
    print("serving until Ctrl-C", flush=True)
    for stop in (signal.SIGINT, signal.SIGTERM):  # both end the loop below, cleanly
        signal.signal(stop, _interrupt)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        print("stopped")
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
