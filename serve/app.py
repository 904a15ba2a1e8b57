"""The Ray Serve application: a thin FastAPI ingress and a batched model deployment.

    HTTP -> Ingress (limits, API key, options; retries once if the model replica dies)
         -> Colorizer (decode, batched forward pass (serve/batching.py), encode)

With `Settings.hops = 1` the two are one deployment: each replica of Ingress holds the
model itself (`ColorizerReplica`), which saves a hop and its CPU on every request, but a
request whose replica dies fails instead of being retried on another.

Bytes travel between the two deployments, never decoded arrays: the upload (tens of KiB)
goes in and the encoded result comes back, so no image crosses the object store, and
the codec runs in the model replica's threads while its next batch fills.
`build_app(settings)` joins the two with `bind`; `app_builder(args)` is the same for
`serve run serve/config.yaml` (the `args` mapping holds `Settings` fields). Decoding and
encoding reuse `colorize.images`, so the endpoint accepts what the CLI accepts, with the
same limits and messages. Every error is a JSON body `{"error": ..., "status": ...}`.
Requests, latencies, batch sizes and errors go to Ray's metrics export (serve/metrics.py).
"""


import asyncio
import hmac
import logging
import math
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from colorize.errors import ColorizeError
from colorize.images import decode_image, encode_image, split_alpha
from colorize.inference import (
    MAX_STRENGTH,
    check_strength,
    colorize_batch_strengths,
    load_artifact,
    read_metadata,
    working_side,
)
from colorize.serve.batching import Batcher
from colorize.serve.metrics import IngressMetrics, MeasuredApp, ModelMetrics
from colorize.serve.settings import API_KEY_HEADER, Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
RAW_TYPES = ("image/", "application/octet-stream")
UPLOAD_FIELDS = ("file", "image")
REPLICA_GONE = (RayActorError, ReplicaUnavailableError)  # the model replica died under a call
STAGES = ("decode", "queue", "model", "encode")
# Ray Serve's own settings for every replica of this app: user code on the replica's event
# loop, not a thread of its own (one hop fewer per request; the model runs in the batcher's
# thread anyway).
REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}


class StageClock:
    """Milliseconds spent per stage, summed over requests: where a request's time goes."""

    def __init__(self, stages: tuple[str, ...]):
        self.totals = dict.fromkeys(stages, 0.0)
        self.count = 0

    def add(self, **ms: float) -> None:
        for stage, value in ms.items():
            self.totals[stage] += value
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: round(v / max(1, self.count), 2) for k, v in self.totals.items()}


class ColorizerReplica:
    """Loads the artifact once per replica, warms it up, and turns image bytes into
    colorized image bytes; the forward passes are batched across requests. The `Colorizer`
    deployment, or part of the ingress itself with one hop."""

    def __init__(self, settings: Settings):
        started = time.perf_counter()
        self.settings = settings
        self.artifact = load_artifact(settings.model_dir, settings.precision)
        self.metadata = self.artifact.metadata  # read once, with the model
        self.batch_sizes: Counter[int] = Counter()
        self.stats_lock = threading.Lock()
        self.clock = StageClock(STAGES)
        self.metrics = ModelMetrics(enabled=serve_replica())
        self.batcher = Batcher(self._run_batch, settings.max_batch_size,
                               settings.batch_wait_timeout_s)
        self._warm_up(settings.max_batch_size)
        log.info("colorizer ready in %.1fs (%s)", time.perf_counter() - started, settings.model_dir)

    def _warm_up(self, batch: int) -> None:
        """Run the model once at batch 1 and at full batch so the first request is not slow."""
        side = working_side(self.artifact.config.image_size)
        for count in sorted({1, batch}):
            grey = [np.zeros((side, side), np.uint8)] * count
            colorize_batch_strengths(self.artifact, grey, [1.0] * count)

    async def colorize(self, data: bytes, fmt: str = "png", strength: float = 1.0) -> dict:
        """Image bytes -> {"payload", "width", "height"}, or {"error", "status"}."""
        t0 = time.perf_counter()
        try:
            image = await asyncio.to_thread(decode_image, data, self.settings.max_pixels)
        except ColorizeError as exc:
            self.metrics.failed("decode")
            return {"error": str(exc), "status": exc.status}
        t1 = time.perf_counter()
        result, queued_ms, model_ms = await self.batcher((image, strength, t1))
        if isinstance(result, dict):
            self.metrics.failed("model")
            return result
        t2 = time.perf_counter()
        try:
            payload = await asyncio.to_thread(_encode, result, fmt)
        except ColorizeError as exc:
            self.metrics.failed("encode")
            return {"error": str(exc), "status": exc.status}
        stages = {"decode": (t1 - t0) * 1e3, "queue": queued_ms, "model": model_ms,
                  "encode": (time.perf_counter() - t2) * 1e3}
        self.clock.add(**stages)
        self.metrics.stages(**stages)
        return {"payload": payload, "width": result.shape[1], "height": result.shape[0]}

    def _run_batch(self, items: list[tuple[np.ndarray, float, float]]) -> list[tuple]:
        """One forward pass (on the batcher's thread): (result or error dict, queue ms,
        model ms) per item."""
        started = time.perf_counter()
        with self.stats_lock:  # stats() reads it on the event loop
            self.batch_sizes[len(items)] += 1
        self.metrics.batch(len(items))
        images, strengths = [i[0] for i in items], [i[1] for i in items]
        try:
            results: list[np.ndarray | dict] = list(colorize_batch_strengths(self.artifact, images, strengths))
        except Exception:  # one odd image must not fail its neighbours: retry one by one
            log.exception("batch of %d failed; colorizing its images one at a time", len(items))
            results = [self._one(image, s) for image, s in zip(images, strengths, strict=True)]
        model_ms = (time.perf_counter() - started) * 1e3
        return [(r, (started - i[2]) * 1e3, model_ms) for r, i in zip(results, items, strict=True)]

    def _one(self, image: np.ndarray, strength: float) -> np.ndarray | dict:
        try:
            return colorize_batch_strengths(self.artifact, [image], [strength])[0]
        except ColorizeError as exc:
            return {"error": str(exc), "status": exc.status}
        except Exception as exc:
            log.exception("could not colorize an image of shape %s", image.shape)
            return {"error": f"the model could not colorize this image ({type(exc).__name__})",
                    "status": 500}

    def stats(self) -> dict[str, Any]:
        """Batch-size histogram and mean ms per stage of this replica (the tests and /stats)."""
        with self.stats_lock:
            sizes = {int(k): v for k, v in sorted(self.batch_sizes.items())}
        return {
            "replica": serve.get_replica_context().replica_id.unique_id,
            "pid": os.getpid(),
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "batches": sum(sizes.values()),
            "images": sum(k * v for k, v in sizes.items()),
            "batch_sizes": sizes,
            "stage_ms": self.clock.means(),
        }

    def get_metadata(self) -> dict[str, Any]:
        return self.metadata


Colorizer = serve.deployment(name="Colorizer")(ColorizerReplica)


def serve_replica() -> bool:
    """Whether this code runs in a Serve replica (where Ray's metrics have an exporter)."""
    try:
        serve.get_replica_context()
        return True
    except Exception:  # RayServeException outside a replica
        return False


def _direct(handle: DeploymentHandle) -> DeploymentHandle:
    """The handle with Serve's gRPC transport (Ray >= 2.5x): arguments and results go to
    the replica directly, not through the object store; the plain handle on older Rays."""
    try:
        return handle.options(_by_reference=False)
    except TypeError:
        return handle


def _encode(result: np.ndarray, fmt: str) -> bytes:
    return encode_image(*split_alpha(result), fmt)


api = FastAPI(
    title="colorize",
    description="Automatic colorization of photos: POST an image, get it back in colour.",
    version="1",
)
# The one Ingress of this replica process records each HTTP answer here (serve/metrics.py).
_ingress_metrics: IngressMetrics | None = None
api.add_middleware(MeasuredApp, ingress_metrics=lambda: _ingress_metrics)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


@api.exception_handler(ColorizeError)
async def _colorize_error(request: Request, exc: ColorizeError) -> JSONResponse:
    retry = {"Retry-After": "5"} if exc.status == 503 else None
    return _error(exc.status, str(exc), retry)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail))


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
    )
    return _error(422, f"invalid request: {problems}")


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return _error(500, f"internal error ({type(exc).__name__}); the server keeps running")


COLORIZE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image: the raw body (Content-Type image/* or "
        "application/octet-stream) or a multipart/form-data upload in the field 'file'",
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    },
    "responses": {
        "200": {"description": "the colorized image, same size as the input",
                "content": {t: {} for t in ("image/png", "image/jpeg", "image/webp")}},
        "400": {"description": "empty body, malformed upload or bad option"},
        "401": {"description": "API key missing or wrong (when the server has one)"},
        "413": {"description": "body or pixel count over the limit"},
        "415": {"description": "not a readable image, or a wrong Content-Type"},
        "422": {"description": "strength not a number from 0 to 3"},
        "503": {"description": "the server is stopping, or the model replica failed twice"},
    },
}


async def _read_capped(request: Request, limit: int) -> bytes:
    too_big = ColorizeError(
        f"the upload is larger than the limit of {limit:,} bytes; send a smaller image", 413
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def _file_from_multipart(request: Request, body: bytes) -> bytes:
    """Parse the (already size-checked) body as multipart and return its file field."""
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
    except Exception as exc:  # starlette raises several types for malformed bodies
        raise ColorizeError(f"malformed multipart upload: {getattr(exc, 'detail', exc)}") from None
    uploads = [form.get(name) for name in UPLOAD_FIELDS] + list(form.values())
    upload = next((u for u in uploads if hasattr(u, "read")), None)
    if upload is None:
        raise ColorizeError("the multipart upload has no file: put the image in the field 'file'")
    try:
        return await upload.read()
    finally:
        await form.close()


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    """HTTP front: limits, API key and options; the image work goes to Colorizer as bytes
    (`colorizer`), or, with one hop (no `colorizer`), to the model in this replica."""

    def __init__(self, colorizer: DeploymentHandle | None, settings: Settings):
        self.colorizer = _direct(colorizer) if colorizer is not None else None
        self.local = ColorizerReplica(settings) if colorizer is None else None
        self.settings = settings
        self.page_html = (STATIC / "index.html").read_text(encoding="utf-8")
        self._metadata: dict[str, Any] | None = None
        self.in_flight = 0  # /colorize requests being answered (what a drain waits for)
        self.stopping = False
        self.retries = 0
        global _ingress_metrics
        self.metrics = _ingress_metrics = IngressMetrics(enabled=serve_replica())

    def _check_key(self, request: Request) -> None:
        expected = self.settings.api_key
        if expected is None:
            return
        given = request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            what = "wrong" if given else "missing"
            raise ColorizeError(f"API key {what}: send it in the {API_KEY_HEADER} header", 401)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self) -> HTMLResponse:
        return HTMLResponse(self.page_html)

    @api.get("/healthz", summary="liveness: answers while the server runs")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "stopping" if self.stopping else "ok",
                "api_key_required": self.settings.api_key is not None}

    @api.get("/model", summary="the artifact's metadata and metrics, and the serving settings")
    async def model(self, request: Request) -> dict[str, Any]:
        self._check_key(request)
        if self._metadata is None:
            self._metadata = await self._model("get_metadata")
        return {**self._metadata, "serving": self.settings.public()}

    @api.get("/stats", summary="batch sizes and time per stage of one model replica")
    async def stats(self, request: Request) -> dict[str, Any]:
        self._check_key(request)
        return {**await self._model("stats"), "ingress_retries": self.retries,
                "ingress_rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)}

    @api.post("/colorize", summary="colorize one image", openapi_extra=COLORIZE_BODY)
    async def colorize(
        self,
        request: Request,
        format: str = Query("png", description="output format: png, jpeg or webp"),
        strength: float = Query(
            1.0, description=f"colour strength from 0 (grey) to {MAX_STRENGTH:g}; "
            "1 is the model's calibrated colour"),
    ) -> Response:
        if self.stopping:
            raise ColorizeError("the server is stopping; send the request again later", 503)
        self._check_key(request)
        fmt = format.lower()
        if fmt not in MEDIA_TYPES:
            raise ColorizeError(f"unsupported output format {format!r}; use png, jpeg or webp")
        strength = check_strength(strength)
        self.in_flight += 1
        self.metrics.set_in_flight(self.in_flight)
        try:
            data = await self._upload(request)
            answer = await self._colorize_once_more_if_lost(data, fmt, strength)
        finally:
            self.in_flight -= 1
            self.metrics.set_in_flight(self.in_flight)
        if "error" in answer:
            raise ColorizeError(answer["error"], answer["status"])
        return Response(answer["payload"], media_type=MEDIA_TYPES[fmt],
                        headers={"X-Image-Size": f"{answer['width']}x{answer['height']}"})

    async def _model(self, method: str, *args: Any) -> Any:
        """`method` of the model: in this replica (one hop) or a Colorizer replica's."""
        if self.local is not None:
            answer = getattr(self.local, method)(*args)
            return await answer if asyncio.iscoroutine(answer) else answer
        return await getattr(self.colorizer, method).remote(*args)

    async def _colorize_once_more_if_lost(self, data: bytes, fmt: str, strength: float) -> dict:
        """Colorizing is idempotent, so a request whose model replica died is sent once more
        (Serve routes it to a live replica, or waits for the restarted one)."""
        try:
            return await self._model("colorize", data, fmt, strength)
        except REPLICA_GONE as exc:
            log.warning("model replica lost under a request (%s); retrying once", type(exc).__name__)
            self.retries += 1
            self.metrics.retried()
        try:
            return await self._model("colorize", data, fmt, strength)
        except REPLICA_GONE:
            raise ColorizeError("the model replica failed twice on this request; "
                                "send it again in a few seconds", 503) from None

    async def drain(self, timeout_s: float, grace_s: float = 0.0) -> int:
        """After `grace_s` (for requests already on their way), refuse new work (503) and
        wait until the requests in flight are answered; returns how many were still
        unanswered at the timeout (0 when drained)."""
        await asyncio.sleep(grace_s)
        self.stopping = True
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.in_flight

    async def _upload(self, request: Request) -> bytes:
        """The image bytes from a raw body or a multipart upload, within the size limit."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind != "multipart/form-data" and not kind.startswith(RAW_TYPES):
            raise ColorizeError(
                f"unsupported Content-Type {kind!r}: send the image as the raw body "
                "(image/* or application/octet-stream) or as multipart/form-data field 'file'",
                415,
            )
        body = await _read_capped(request, self.settings.max_upload_bytes)
        if kind == "multipart/form-data":
            body = await _file_from_multipart(request, body)
        if not body:
            raise ColorizeError("the image is empty (0 bytes): send the image bytes")
        return body


def colorizer_options(settings: Settings) -> dict[str, Any]:
    """Replicas or autoscaling, concurrency, health checks and resources of the model."""
    target = settings.autoscaling_target
    options: dict[str, Any] = {
        # room for one batch running and the next one filling (decoding included)
        "max_ongoing_requests": max(2 * settings.max_batch_size, math.ceil(target), 2),
        # a hung replica is replaced; a dead one is restarted as soon as Ray reports it
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 30.0,
        # a stopping replica first answers what it holds
        "graceful_shutdown_wait_loop_s": 0.5,
        "graceful_shutdown_timeout_s": 20.0,
        "ray_actor_options": {
            "num_cpus": settings.cpus_per_replica,
            "num_gpus": settings.gpus_per_replica,
            "runtime_env": {"env_vars": dict(REPLICA_ENV)},
        },
    }
    if settings.min_replicas == settings.max_replicas:
        options["num_replicas"] = settings.min_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": settings.min_replicas,
            "max_replicas": settings.max_replicas,
            "target_ongoing_requests": target,
        }
    return options


def ingress_options(settings: Settings) -> dict[str, Any]:
    """The ingress mostly waits on I/O; it takes no CPU reservation and many requests;
    `ingress_replicas` of it (more than one: no single process in front of the model)."""
    return {
        "num_replicas": settings.ingress_replicas,
        "max_ongoing_requests": max(256, 8 * settings.max_batch_size * settings.max_replicas),
        "health_check_period_s": 2.0,
        "graceful_shutdown_wait_loop_s": 0.5,
        "ray_actor_options": {"num_cpus": 0, "runtime_env": {"env_vars": dict(REPLICA_ENV)}},
    }


def build_app(settings: Settings) -> serve.Application:
    """The application graph: Ingress(Colorizer) with the options the settings ask for, or
    with one hop the ingress alone, scaled and sized as the model replicas would be."""
    read_metadata(settings.model_dir)  # fail here, with one clear line, not in a replica
    if settings.hops == 1:
        return Ingress.options(**colorizer_options(settings)).bind(None, settings)  # type: ignore[attr-defined]
    colorizer = Colorizer.options(**colorizer_options(settings)).bind(settings)
    return Ingress.options(**ingress_options(settings)).bind(colorizer, settings)  # type: ignore[attr-defined]


def app_builder(args: dict[str, Any]) -> serve.Application:
    """For `serve run serve/config.yaml`: `args` are Settings fields (model_dir required)."""
    return build_app(Settings.from_dict(dict(args)))
