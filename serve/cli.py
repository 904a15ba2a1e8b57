"""`colorize serve MODEL`: run the colorization endpoint, and `start()` for other commands.

    colorize serve runs/quickstart/model                 # local Ray, http://127.0.0.1:8000/
    colorize serve MODEL --replicas 1-4 --port 8080      # autoscaling between 1 and 4
    colorize serve MODEL --address auto                  # deploy onto a running cluster

Locally it prints the endpoint, web page, API docs and dashboard URLs and serves until
the first Ctrl-C or SIGTERM: then it answers the requests in flight (new ones get a 503
JSON answer), stops Serve and the Ray it started, and exits 130 (SIGINT) or 143
(SIGTERM). With `--address` it deploys onto that cluster and returns (Serve keeps running
there). `start(model_dir, ...)` does the same from Python and returns the endpoint URL.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from colorize.ray_session import connect
from serve.settings import API_KEY_ENV, Settings, parse_replicas

log = logging.getLogger(__name__)
APP_NAME = "colorize"
DRAIN_S = 20.0  # a stop waits this long at most for the requests in flight
GRACE_S = 1.0  # requests already on their way to the ingress when a stop comes are served
# Serve's gRPC data plane between the proxy and the replicas (Ray >= 2.56; measured fewer
# CPU ms per request on 2 cores, bench/README.md), for the local Ray these commands start.
# On a cluster, set it (or RAY_SERVE_THROUGHPUT_OPTIMIZED=1) in the cluster's environment.
LOCAL_RAY_ENV = {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}


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
    started = connect_for_serving(address)[0]
    url = deploy(settings, name=name, route_prefix=route_prefix)
    if blocking:
        log.info("serving %s at %s (Ctrl-C stops)", settings.model_dir, url)
        serve_until_stopped(name, started)
    return url


def connect_for_serving(address: str | None = None, **local_options: Any) -> tuple[bool, str | None]:
    """`ray_session.connect`, with LOCAL_RAY_ENV set first when it starts a local Ray
    (the proxy and replicas inherit the environment then)."""
    import ray

    if address is None and not ray.is_initialized():
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    return connect(address, **local_options)


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
        from colorize import compat

        return compat.serve_http_address()
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
    p.add_argument("--batch-wait-ms", type=float, default=Settings.batch_wait_timeout_s * 1000,
                   help="longest wait for a batch to fill up to the last batch's size")
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
    started, dashboard = connect_for_serving(args.address, dashboard_port=args.dashboard_port)
    url = deploy(settings)
    print(f"endpoint:  POST {url}colorize\nweb page:  {url}\nAPI docs:  {url}docs")
    print(f"dashboard: {dashboard or 'see the Ray cluster'}", flush=True)
    if args.address:
        print("deployed onto the cluster; it keeps serving after this command returns")
        return 0
    print("serving until Ctrl-C", flush=True)
    signum = serve_until_stopped(APP_NAME, started)
    print(f"stopped; serve the model again with: colorize serve {args.model}", flush=True)
    return 128 + signum


class _StopSignals:
    """While installed, the first SIGINT/SIGTERM is recorded (`first`, `event`) instead of
    raising; a second one raises KeyboardInterrupt to stop at once. The handlers that were
    there before (Ray's, the CLI's) are put back on exit."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.event = threading.Event()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._saved[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.first is not None:
            raise KeyboardInterrupt
        self.first = signum
        self.event.set()


def serve_until_stopped(name: str = APP_NAME, stop_ray: bool = True) -> int:
    """Serve until the first SIGINT or SIGTERM (main thread), then drain the application,
    shut Serve down, and Ray too if `stop_ray`. Returns the signal number."""
    with _StopSignals() as stop:
        while not stop.event.wait(0.5):
            pass
        signum = stop.first or signal.SIGINT
        _say(f"{signal.Signals(signum).name}: stopping the server; answering the requests in "
             f"flight (up to {DRAIN_S:g} s), new ones get 503")
        left = drain(name, DRAIN_S)
        if left:
            _say(f"{left} requests were still unanswered after {DRAIN_S:g} s")
        _shutdown(stop_ray)
    return signum


def drain(name: str = APP_NAME, timeout_s: float = DRAIN_S) -> int:
    """Ask the application's ingress to refuse new requests (after GRACE_S, for those
    already on their way) and wait until those in flight are answered; returns how many
    were still unanswered at the timeout (-1 if the ingress could not be asked)."""
    from ray import serve

    try:
        handle = serve.get_app_handle(name)
        return int(handle.drain.remote(timeout_s, GRACE_S).result(timeout_s=timeout_s + 10))
    except Exception as exc:  # the stop goes on: Serve is shut down all the same
        log.warning("could not drain %s: %s", name, exc)
        return -1


def _shutdown(stop_ray: bool) -> None:
    import ray
    from ray import serve

    with contextlib.suppress(Exception):
        serve.shutdown()
    if stop_ray:
        ray.shutdown()


def _say(line: str) -> None:
    print(f"colorize: {line}", flush=True)
