"""The colorization endpoint on Ray Serve: a batched model deployment behind a FastAPI ingress.

- `serve.settings`: the one validated `Settings` dataclass (model, batching, limits, key).
- `serve.app`: the deployments and `build_app(settings)` / `app_builder(args)`.
- `serve.batching`: `Batcher`, batches formed when the model is free.
- `serve.cli`: `colorize serve MODEL` (stops by draining), `start(model_dir, ...) -> url`
  and `drain(name)` for other commands.
- `serve/static/index.html`: the web page at `/`; `serve/config.yaml`: for `serve run`.
"""
