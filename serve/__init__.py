"""The colorization endpoint on Ray Serve: a batched model deployment behind a FastAPI ingress.

- `serve.settings`: the one validated `Settings` dataclass (model, batching, limits, key).
- `serve.app`: the deployments and `build_app(settings)` / `app_builder(args)`.
- `serve.cli`: `colorize serve MODEL` and `start(model_dir, ...) -> url` for other commands.
- `serve/static/index.html`: the web page at `/`; `serve/config.yaml`: for `serve run`.
"""
