"""The colorization endpoint on Ray Serve: a batched model deployment behind a FastAPI ingress.

- `colorize.serve.settings`: the one validated `Settings` dataclass (model, batching, limits, key).
- `colorize.serve.app`: the deployments and `build_app(settings)` / `app_builder(args)`.
- `colorize.serve.batching`: `Batcher`, batches formed when the model is free.
- `colorize.serve.runner`: `start(model_dir, ...) -> url`, `serve_until_stopped` and `drain(name)`
  (what `colorize serve MODEL`, in colorize/cli/serve.py, and `colorize pipeline` run).
- `serve/static/index.html`: the web page at `/`; `serve/config.yaml`: for `serve run`.
"""
