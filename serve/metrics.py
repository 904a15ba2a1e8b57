"""The endpoint's own metrics, exported through Ray's metrics system (`ray.serve.metrics`).

Every replica records into Ray's metrics agent on its node, which serves them in Prometheus'
text format on the node's metrics export port (`ray start --metrics-export-port`,
`ray.init(_metrics_export_port=...)`) beside Ray's and Serve's own figures, so Ray's
Prometheus/Grafana set-up and the dashboard's Metrics page show them. Ray prefixes each name
with `ray_`, and a counter gets `_total`; Serve adds the tags `application`, `deployment` and
`replica` by itself. The names as Prometheus shows them:

| metric | type | tags | recorded by |
| --- | --- | --- | --- |
| `ray_colorize_requests_total` | counter | route, status | the ingress, every HTTP answer |
| `ray_colorize_request_latency_ms` | histogram | route, status | the ingress, from the request to its answer |
| `ray_colorize_errors_total` | counter | route, status | the ingress, every 4xx and 5xx answer |
| `ray_colorize_requests_in_flight` | gauge | | the ingress, /colorize requests being answered |
| `ray_colorize_replica_retries_total` | counter | | the ingress, requests sent again because their model replica died |
| `ray_colorize_batch_size` | histogram | | the model replica, images per forward pass (serve/batching.py) |
| `ray_colorize_stage_latency_ms` | histogram | stage | the model replica, per image: decode, queue, model, encode |
| `ray_colorize_image_errors_total` | counter | stage | the model replica, images that failed in decode, model or encode |

`route` is the FastAPI route's path (`/colorize`, `/healthz`, ...; `unmatched` for a path no
route has, so a scan of random URLs cannot blow up the number of series). Ray Serve's own
`ray_serve_*` metrics (HTTP requests at the proxy, replica queue lengths) are exported too;
its `serve_batch_*` figures are not, since the model batches with serve/batching.py rather
than `@serve.batch`: `ray_colorize_batch_size` is their counterpart.

`ModelMetrics(enabled=False)` and `IngressMetrics(enabled=False)` record nothing (for the
model replica used outside Serve, as a test does).
"""

from __future__ import annotations

from typing import Any

PREFIX = "colorize_"
LATENCY_MS = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0]
BATCH_SIZES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
UNMATCHED = "unmatched"


class IngressMetrics:
    """What the HTTP ingress records: requests by route and status, latencies, errors,
    requests in flight and retries after a lost model replica."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from ray.serve import metrics

        self.requests = metrics.Counter(
            PREFIX + "requests", "HTTP requests answered, by route and status code",
            tag_keys=("route", "status"))  # type: ignore[arg-type]  # Ray annotates tuple[str]
        self.latency = metrics.Histogram(
            PREFIX + "request_latency_ms", "milliseconds from a request's arrival at the "
            "ingress to its answer, by route and status code", boundaries=LATENCY_MS,
            tag_keys=("route", "status"))  # type: ignore[arg-type]  # Ray annotates tuple[str]
        self.errors = metrics.Counter(
            PREFIX + "errors", "HTTP requests answered with a 4xx or 5xx status",
            tag_keys=("route", "status"))  # type: ignore[arg-type]  # Ray annotates tuple[str]
        self.in_flight = metrics.Gauge(
            PREFIX + "requests_in_flight", "/colorize requests this ingress replica is answering")
        self.retries = metrics.Counter(
            PREFIX + "replica_retries", "requests sent again because their model replica died")
        self.in_flight.set(0, tags={})

    def answered(self, route: str, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        tags = {"route": route, "status": str(status)}
        self.requests.inc(1, tags=dict(tags))
        self.latency.observe(seconds * 1e3, tags=dict(tags))
        if status >= 400:
            self.errors.inc(1, tags=dict(tags))

    def set_in_flight(self, count: int) -> None:
        if self.enabled:
            self.in_flight.set(count, tags={})

    def retried(self) -> None:
        if self.enabled:
            self.retries.inc(1, tags={})


class ModelMetrics:
    """What a model replica records: batch sizes, time per stage per image, failed images."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from ray.serve import metrics

        self.batch_size = metrics.Histogram(
            PREFIX + "batch_size", "images per forward pass of the model",
            boundaries=BATCH_SIZES)
        self.stage = metrics.Histogram(
            PREFIX + "stage_latency_ms", "milliseconds an image spends in each stage of the "
            "model replica: decode, queue (waiting for its batch), model, encode",
            boundaries=LATENCY_MS, tag_keys=("stage",))
        self.image_errors = metrics.Counter(
            PREFIX + "image_errors", "images that failed in the model replica, by stage",
            tag_keys=("stage",))

    def batch(self, size: int) -> None:
        if self.enabled:
            self.batch_size.observe(size, tags={})

    def stages(self, **ms: float) -> None:
        if self.enabled:
            for stage, value in ms.items():
                self.stage.observe(value, tags={"stage": stage})

    def failed(self, stage: str) -> None:
        if self.enabled:
            self.image_errors.inc(1, tags={"stage": stage})


class MeasuredApp:
    """Pure ASGI middleware around the FastAPI app: each HTTP answer's route, status and
    latency go to `ingress_metrics` of the replica (a callable; None records nothing).
    Pure ASGI rather than `@app.middleware("http")`, whose per-request task costs CPU."""

    def __init__(self, app: Any, ingress_metrics: Any):
        self.app, self.ingress_metrics = app, ingress_metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        metrics = self.ingress_metrics() if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        import time

        started, status = time.perf_counter(), 500  # unless an answer starts

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            metrics.answered(route_of(scope), status, time.perf_counter() - started)


def route_of(scope: dict) -> str:
    """The matched route's path template (Starlette puts the route in the scope)."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED
