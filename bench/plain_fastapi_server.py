"""The baseline for bench/serve_load.py: a plain single-process FastAPI + uvicorn server.

What a user might write instead of the Ray Serve app: load the artifact once, and in a
plain (threadpool) endpoint decode, colorize one image, encode. No Ray, no batching.

    python bench/plain_fastapi_server.py --model runs/quickstart/model --port 8100
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from colorize.artifact import load_artifact  # noqa: E402
from colorize.errors import ColorizeError  # noqa: E402
from colorize.images import decode_image, encode_image, split_alpha  # noqa: E402
from colorize.inference import colorize_image  # noqa: E402


def make_app(model_dir: str) -> FastAPI:
    artifact = load_artifact(model_dir)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/colorize")
    async def colorize_endpoint(request: Request) -> Response:
        data = await request.body()
        try:  # in the threadpool, as a plain `def` endpoint would run
            payload = await run_in_threadpool(_colorize, artifact, data)
        except ColorizeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return Response(payload, media_type="image/png")

    return app


def _colorize(artifact, data: bytes) -> bytes:
    rgb, alpha = split_alpha(colorize_image(artifact, decode_image(data)))
    return encode_image(rgb, alpha, "png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
