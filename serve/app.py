"""The Ray Serve application: a FastAPI ingress that validates, and a batched model deployment.

    HTTP -> Ingress (limits, API key, decode, encode) -> Colorizer (@serve.batch, one
    forward pass per batch through `colorize.colorizer.colorize_batch`)

`build_app(settings)` joins the two with `bind`; `app_builder(args)` is the same for
`serve run serve/config.yaml` (the `args` mapping holds `Settings` fields). Decoding and
encoding reuse `colorize.images`, so the endpoint accepts what the CLI accepts, with the
same limits and messages. Every error is a JSON body `{"error": ..., "status": ...}`.
"""


import asyncio
import hmac
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from colorize.artifact import load_artifact, read_metadata
from colorize.colorizer import colorize_batch
from colorize.data import stored_side
from colorize.errors import ColorizeError
from colorize.images import decode_image, encode_image, split_alpha
from serve.settings import API_KEY_HEADER, Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
RAW_TYPES = ("image/", "application/octet-stream")
UPLOAD_FIELDS = ("file", "image")


@serve.deployment(name="Colorizer")
class Colorizer:
    """Loads the artifact once per replica, warms it up, and colorizes batches of images."""

    def __init__(self, settings: Settings):
        started = time.perf_counter()
        self.artifact = load_artifact(settings.model_dir)
        self.metadata = read_metadata(settings.model_dir)
        self.batch_sizes: Counter[int] = Counter()
        self._batched.set_max_batch_size(settings.max_batch_size)
        self._batched.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        self._warm_up(settings.max_batch_size)
        log.info("colorizer ready in %.1fs (%s)", time.perf_counter() - started, settings.model_dir)

    def _warm_up(self, batch: int) -> None:
        """Run the model once at batch 1 and at full batch so the first request is not slow."""
        side = stored_side(self.artifact.config.image_size)
        for count in sorted({1, batch}):
            colorize_batch(self.artifact, [np.zeros((side, side), np.uint8)] * count)

    async def colorize(self, image: np.ndarray) -> np.ndarray | dict:
        """One decoded image -> colorized uint8 array, or {"error", "status"} for the caller."""
        return await self._batched(image)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def _batched(self, images: list[np.ndarray]) -> list[np.ndarray | dict]:
        self.batch_sizes[len(images)] += 1
        try:  # off the event loop, so the next batch fills while this one runs
            return await asyncio.to_thread(colorize_batch, self.artifact, images)
        except Exception:  # one odd image must not fail its neighbours: retry one by one
            log.exception("batch of %d failed; colorizing its images one at a time", len(images))
            return [await asyncio.to_thread(self._one, image) for image in images]

    def _one(self, image: np.ndarray) -> np.ndarray | dict:
        try:
            return colorize_batch(self.artifact, [image])[0]
        except ColorizeError as exc:
            return {"error": str(exc), "status": exc.status}
        except Exception as exc:
            log.exception("could not colorize an image of shape %s", image.shape)
            return {"error": f"the model could not colorize this image ({type(exc).__name__})",
                    "status": 500}

    def stats(self) -> dict[str, Any]:
        """Batch-size histogram of this replica (what the tests and /stats read)."""
        sizes = {int(k): v for k, v in sorted(self.batch_sizes.items())}
        return {
            "replica": serve.get_replica_context().replica_id.unique_id,
            "batches": sum(sizes.values()),
            "images": sum(k * v for k, v in sizes.items()),
            "batch_sizes": sizes,
        }

    def get_metadata(self) -> dict[str, Any]:
        return self.metadata


api = FastAPI(
    title="colorize",
    description="Automatic colorization of photos: POST an image, get it back in colour.",
    version="1",
)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


@api.exception_handler(ColorizeError)
async def _colorize_error(request: Request, exc: ColorizeError) -> JSONResponse:
    return _error(exc.status, str(exc))


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
    """HTTP front: limits, API key, decoding and encoding; the model work goes to Colorizer."""

    def __init__(self, colorizer: DeploymentHandle, settings: Settings):
        self.colorizer = colorizer
        self.settings = settings
        self.page = (STATIC / "index.html").read_text(encoding="utf-8")
        self._metadata: dict[str, Any] | None = None

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
        return HTMLResponse(self.page)

    @api.get("/healthz", summary="liveness: answers while the server runs")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "api_key_required": self.settings.api_key is not None}

    @api.get("/model", summary="the artifact's metadata and metrics, and the serving settings")
    async def model(self, request: Request) -> dict[str, Any]:
        self._check_key(request)
        if self._metadata is None:
            self._metadata = await self.colorizer.get_metadata.remote()
        return {**self._metadata, "serving": self.settings.public()}

    @api.get("/stats", summary="batch-size histogram of one model replica")
    async def stats(self, request: Request) -> dict[str, Any]:
        self._check_key(request)
        return await self.colorizer.stats.remote()

    @api.post("/colorize", summary="colorize one image", openapi_extra=COLORIZE_BODY)
    async def colorize(
        self,
        request: Request,
        format: str = Query("png", description="output format: png, jpeg or webp"),
    ) -> Response:
        self._check_key(request)
        fmt = format.lower()
        if fmt not in MEDIA_TYPES:
            raise ColorizeError(f"unsupported output format {format!r}; use png, jpeg or webp")
        data = await self._upload(request)
        image = await asyncio.to_thread(decode_image, data, self.settings.max_pixels)
        result = await self.colorizer.colorize.remote(image)
        if isinstance(result, dict):
            raise ColorizeError(result["error"], result["status"])
        rgb, alpha = split_alpha(result)
        payload = await asyncio.to_thread(encode_image, rgb, alpha, fmt)
        height, width = rgb.shape[:2]
        return Response(payload, media_type=MEDIA_TYPES[fmt],
                        headers={"X-Image-Size": f"{width}x{height}"})

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
    """Replicas or autoscaling, concurrency and resources of the model deployment."""
    target = settings.target_ongoing_requests or float(settings.max_batch_size)
    options: dict[str, Any] = {
        # room for one batch running and the next one filling
        "max_ongoing_requests": max(2 * settings.max_batch_size, math.ceil(target), 2),
        "ray_actor_options": {
            "num_cpus": settings.cpus_per_replica,
            "num_gpus": settings.gpus_per_replica,
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
    """The ingress mostly waits on I/O; it takes no CPU reservation and many requests."""
    return {
        "num_replicas": 1,
        "max_ongoing_requests": max(256, 8 * settings.max_batch_size * settings.max_replicas),
        "ray_actor_options": {"num_cpus": 0},
    }


def build_app(settings: Settings) -> serve.Application:
    """The application graph: Ingress(Colorizer) with the options the settings ask for."""
    read_metadata(settings.model_dir)  # fail here, with one clear line, not in a replica
    colorizer = Colorizer.options(**colorizer_options(settings)).bind(settings)
    return Ingress.options(**ingress_options(settings)).bind(colorizer, settings)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """For `serve run serve/config.yaml`: `args` are Settings fields (model_dir required)."""
    return build_app(Settings.from_dict(dict(args)))
