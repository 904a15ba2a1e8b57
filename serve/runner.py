"""Run the Serve application from Python: `start(model_dir, ...)` connects to (or starts)
Ray, deploys serve/app.py and returns the endpoint URL; `serve_until_stopped` serves until
the first SIGINT/SIGTERM and `drain` answers the requests in flight before Serve stops.
`colorize serve` (colorize/cli/serve.py) and `colorize pipeline` use it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from colorize.distributed.ray_session import connect
from colorize.errors import ColorizeError
from colorize.serve.settings import Settings, parse_replicas

log = logging.getLogger(__name__)
APP_NAME = "colorize"
DRAIN_S = 20.0  # a stop waits this long at most for the requests in flight
GRACE_S = 1.0  # requests already on their way to the ingress when a stop comes are served
# Serve's gRPC data plane between the proxy and the replicas (Ray >= 2.56; measured fewer
# CPU ms per request on 2 cores, docs/experiments.md), for the local Ray these commands start.
# On a cluster, set it (or RAY_SERVE_THROUGHPUT_OPTIMIZED=1) in the cluster's environment.
LOCAL_RAY_ENV = {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}
INGRESSES = ("proxy", "direct")
DIRECT_PORTS = 100  # direct ingress: replicas take free ports from --port + 1 up to this many more


def direct_ingress_env(port: int) -> dict[str, str]:
    """Ray Serve's direct ingress, for the local Ray `--ingress direct` starts: each
    ingress replica also answers HTTP itself, on the next free port above `port`, where
    Serve's proxy still answers for all replicas. A request sent to a replica's port skips
    the proxy hop and its CPU (docs/experiments.md: 0.82-0.85 of the in-process ceiling against
    0.63-0.68 through the proxy). Requests are drained by `drain`, so a stopping replica
    need not stay open for a load balancer."""
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port + 1),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1 + DIRECT_PORTS),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0"}


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
    ingress: str = "proxy",
    **options: Any,
) -> str:
    """Deploy the endpoint and return its base URL (e.g. 'http://127.0.0.1:8000/').

    Starts a local Ray instance (address "local") unless Ray is already initialised or an
    `address` is given ("auto", "ray://..."). `replicas` is N or "MIN-MAX" (autoscaling);
    `options` are further `Settings` fields (max_batch_size, api_key, ...); `ingress`
    "direct" lets each replica answer on its own port too (`direct_ingress_env`). When Serve
    already runs on the cluster its HTTP host and port stay as they are and the URL says
    so. `blocking=True` serves until Ctrl-C, then removes the application.
    """
    low, high = parse_replicas(str(replicas))
    settings = Settings.from_dict({
        "model_dir": str(model_dir), "host": host, "port": port,
        "min_replicas": low, "max_replicas": high, **options,
    })
    started = connect_for_serving(address, ingress=ingress, port=port)[0]
    url = deploy(settings, name=name, route_prefix=route_prefix)
    if blocking:
        log.info("serving %s at %s (Ctrl-C stops)", settings.model_dir, url)
        serve_until_stopped(name, started)
    return url


def connect_for_serving(
    address: str | None = None, ingress: str = "proxy", port: int = 8000, **local_options: Any
) -> tuple[bool, str | None]:
    """`ray_session.connect`, with LOCAL_RAY_ENV (and with `ingress="direct"` the direct
    ingress flags) set first when it starts a local Ray: the controller and replicas read
    them from the environment they inherit, once, at start-up."""
    import ray

    if ingress not in INGRESSES:
        raise ColorizeError(f"ingress must be one of {', '.join(INGRESSES)}, not {ingress!r}")
    local = address is None and not ray.is_initialized()
    if ingress == "direct" and not local:
        raise ColorizeError(
            "--ingress direct needs the local Ray this command starts (Ray reads the setting "
            "when it starts); on a cluster, start Ray with RAY_SERVE_ENABLE_DIRECT_INGRESS=1 instead")
    if local:
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
        if ingress == "direct":
            os.environ.update(direct_ingress_env(port))
    return connect(address, **local_options)


def deploy(settings: Settings, name: str = APP_NAME, route_prefix: str = "/") -> str:
    """Start Serve's HTTP proxy (bound to settings.host) and run the application on it."""
    from ray import serve

    from colorize.serve.app import build_app

    app = build_app(settings)  # checks the artifact first: one clear line if it is not one
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(app, name=name, route_prefix=route_prefix, blocking=False)
    return _url(*_http_address(settings), route_prefix)


def _url(host: str, port: int, route_prefix: str = "/") -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}/"


def direct_urls(settings: Settings, name: str = APP_NAME, route_prefix: str = "/",
                timeout_s: float = 30.0) -> list[str]:
    """The base URLs the application's ingress replicas answer on under direct ingress:
    settings.host, each replica on its own port above the proxy's (a replaced replica may
    come back on another)."""
    from colorize.distributed import ray_compat

    deadline = time.monotonic() + timeout_s
    while not (ports := ray_compat.direct_ingress_ports(name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not ports:
        raise ColorizeError(f"Serve listed no port for application {name!r} after {timeout_s:g} s")
    return [_url(settings.host, port, route_prefix) for port in ports]


def _http_address(settings: Settings) -> tuple[str, int]:
    """The proxy's real host and port (Serve keeps its first ones if it was running)."""
    try:
        from colorize.distributed import ray_compat

        return ray_compat.serve_http_address()
    except Exception:  # a private API; fall back to what was asked for
        return settings.host, settings.port


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
