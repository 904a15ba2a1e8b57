"""`colorize submit serve MODEL_DIR`: deploy the endpoint onto a running Ray cluster.

    colorize submit serve /mnt/shared/runs/big/model --replicas 1-4 --port 8000
    colorize jobs serve                   # the cluster's Serve applications and replicas
    colorize jobs serve --delete colorize # remove one application, keeping the others

The deployment is serve/config.yaml, filled in: `model_dir` and the `colorize serve` options
become the application's `args` (fields of colorize.serve.settings.Settings, validated here first),
this source tree is uploaded as the application's runtime `working_dir` (as `colorize submit`
does for jobs; `--no-ship` uses the colorize installed on the cluster), and the whole config
goes to Serve's REST API on the cluster's dashboard (`PUT /api/serve/applications/`, what
`serve deploy` sends) with the cluster's auth token. Other applications on the cluster are
kept. It waits until the application runs and prints its endpoint.

`delete` removes one application the same way: the other applications' configs are PUT
again without it (Serve removes what a config no longer lists), or, when it is the last one,
`DELETE /api/serve/applications/` (what `serve shutdown` sends) shuts Serve down.

Autoscaling delays (`--upscale-delay-s`, `--downscale-delay-s`) are Serve options the
settings do not carry: once the application runs, they are added to its autoscaling
deployment as a `deployments` override in the config, which takes precedence over the code.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from colorize.distributed import ray_compat
from colorize.distributed.jobs import cluster_errors, open_client
from colorize.errors import ColorizeError

log = logging.getLogger(__name__)

TERMINAL_FAILURES = ("DEPLOY_FAILED", "UNHEALTHY")



def config_template() -> dict:
    """serve/config.yaml as shipped with the `colorize.serve` package (its import path, proxy, port)."""
    serve = importlib.import_module("colorize.serve")  # the folder serve/, installed under colorize
    path = Path(serve.__file__ or "").resolve().parent / "config.yaml"
    config = yaml.safe_load(path.read_text())
    if len(config.get("applications", [])) != 1:
        raise ColorizeError(f"{path} should describe exactly one application")
    return config


def serve_config(args: dict, *, name: str = "colorize", route_prefix: str = "/",
                 host: str | None = None, port: int | None = None,
                 runtime_env: dict | None = None, deployments: list | None = None) -> dict:
    """The Serve deploy config (ServeDeploySchema) for the colorize app with these `args`."""
    from colorize.serve.settings import Settings

    Settings.from_dict(args)  # unknown or bad settings fail here, not in a replica
    config = config_template()
    app = dict(config["applications"][0], name=name, route_prefix=route_prefix, args=args)
    if runtime_env:
        app["runtime_env"] = runtime_env
    if deployments:
        app["deployments"] = deployments
    http = dict(config.get("http_options", {}))
    http.update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
    config.update(http_options=http, applications=[app])
    validate(config)
    return config


def validate(config: dict) -> None:
    """Ray's own schema for `serve deploy` configs; one line naming the problem."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ColorizeError(f"invalid Serve config at {where}: {first.get('msg')}") from None


def connect(address: str | None = None, token_file: str | Path | None = None):
    """A ServeSubmissionClient on the cluster's dashboard, with the token."""
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    return open_client(ServeSubmissionClient, address, token_file)


def ship_runtime_env(client) -> dict:
    """Upload this source tree to the cluster (as a job's working_dir is) and name it."""
    from colorize.distributed.jobs import runtime_env

    env = runtime_env(ship=True)
    with cluster_errors(ray_compat.client_address(client)):
        # SubmissionClient's own upload: content-addressed gcs:// package, skipped when the
        # cluster already has it; py_modules when installed from a wheel.
        ray_compat.upload_runtime_env(client, env)
    env.pop("excludes", None)
    return env


def details(client) -> dict:
    with cluster_errors(ray_compat.client_address(client)):
        return client.get_serve_details() or {}


def _other_configs(current: dict, names: set[str]) -> list[dict]:
    """The deployed configs of the applications not in `names`, to PUT again beside ours;
    one deployed from Python (serve.run) has none, and a config PUT would remove it."""
    others = []
    for app in (current.get("applications") or {}).values():
        if app["name"] in names:
            continue
        if app.get("source") != "declarative" or not app.get("deployed_app_config"):
            raise ColorizeError(
                f"the cluster serves {app['name']!r}, deployed from Python (serve.run): a config "
                "deploy would replace it; remove it first (serve shutdown) or deploy the same way")
        others.append(app["deployed_app_config"])
    return others


def deploy(client, config: dict) -> None:
    """PUT `config`'s application, keeping the other applications deployed on the cluster."""
    current = details(client)
    others = _other_configs(current, {app["name"] for app in config["applications"]})
    payload = dict(config, applications=others + config["applications"])
    with cluster_errors(ray_compat.client_address(client)):
        client.deploy_applications(payload)


def delete(client, name: str, timeout_s: float = 120.0, poll_s: float = 1.0) -> list[str]:
    """Remove the application `name` (as `submit serve` deployed it), keeping the others;
    wait until Serve no longer lists it. Returns the names of those still deployed."""
    current = details(client)
    apps = current.get("applications") or {}
    if name not in apps:
        raise ColorizeError(f"no Serve application {name!r} on the cluster "
                            f"(deployed: {', '.join(apps) or 'none'})")
    others = _other_configs(current, {name})
    with cluster_errors(ray_compat.client_address(client)):
        if others:  # the others' configs again, without `name`: Serve removes it
            payload = {key: current[key] for key in ("proxy_location", "http_options")
                       if current.get(key)}
            payload["applications"] = others
            validate(payload)
            client.deploy_applications(payload)
        else:  # the last application: shut Serve down (DELETE /api/serve/applications/)
            client.delete_applications()
    deadline = time.time() + timeout_s
    while True:
        apps = details(client).get("applications") or {}
        if name not in apps:
            return sorted(apps)
        if time.time() >= deadline:
            raise ColorizeError(f"Serve application {name!r} still {apps[name]['status']} "
                                f"{timeout_s:.0f} s after its removal was asked "
                                "(see `colorize jobs serve` and the dashboard's Serve page)")
        time.sleep(poll_s)


def wait_running(client, name: str, timeout_s: float = 300.0, poll_s: float = 1.0) -> dict:
    """Poll until the application RUNS (its details) or fails (one line: Serve's message)."""
    deadline = time.time() + timeout_s
    status = "NOT_STARTED"
    while time.time() < deadline:
        app = (details(client).get("applications") or {}).get(name) or {}
        status = app.get("status", "NOT_STARTED")
        if status == "RUNNING":
            return app
        if status in TERMINAL_FAILURES:
            raise ColorizeError(f"Serve application {name!r} {status}: "
                                f"{_last_line(app.get('message'))} (colorize jobs serve)")
        time.sleep(poll_s)
    raise ColorizeError(f"Serve application {name!r} still {status} after {timeout_s:.0f} s "
                        "(see `colorize jobs serve` and the dashboard's Serve page)")


def _last_line(message: str | None) -> str:
    """The last line of Serve's message (a traceback's error), without the exception's name."""
    lines = (message or "").strip().splitlines()
    if not lines:
        return "no message"
    return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1].strip())


def autoscaling_overrides(app: dict, **delays: float | None) -> list[dict]:
    """A `deployments` override adding `delays` to every autoscaling deployment of `app`."""
    delays = {k: v for k, v in delays.items() if v is not None}
    overrides = []
    for name, deployment in app["deployments"].items():
        scaling = deployment["deployment_config"].get("autoscaling_config")
        if scaling and delays:
            keep = ("min_replicas", "max_replicas", "target_ongoing_requests")
            overrides.append({"name": name, "autoscaling_config": {
                **{k: scaling[k] for k in keep if scaling.get(k) is not None}, **delays}})
    return overrides


def endpoint(client, app: dict) -> str:
    """The application's URL: the dashboard's host, Serve's real HTTP port and the route."""
    http = details(client).get("http_options") or {}
    host = urlparse(ray_compat.client_address(client)).hostname or "127.0.0.1"
    return f"http://{host}:{http.get('port', 8000)}{(app.get('route_prefix') or '/').rstrip('/')}/"


def submit(client, args: dict, *, name: str = "colorize", route_prefix: str = "/",
           host: str | None = None, port: int | None = None, ship: bool = True,
           upscale_delay_s: float | None = None, downscale_delay_s: float | None = None,
           timeout_s: float = 300.0) -> str:
    """Deploy the colorize app with these Settings `args`; wait until it runs; its URL."""
    runtime_env = ship_runtime_env(client) if ship else None
    options: dict[str, Any] = dict(name=name, route_prefix=route_prefix, host=host, port=port,
                                   runtime_env=runtime_env)
    config = serve_config(args, **options)
    deploy(client, config)
    app = wait_running(client, name, timeout_s)
    overrides = autoscaling_overrides(app, upscale_delay_s=upscale_delay_s,
                                      downscale_delay_s=downscale_delay_s)
    if overrides:
        deploy(client, serve_config(args, **options, deployments=overrides))
        app = wait_running(client, name, timeout_s)
    return endpoint(client, app)


def replica_counts(app: dict) -> dict[str, tuple[int, int]]:
    """Per deployment: (RUNNING replicas, target replicas)."""
    counts = {}
    for name, deployment in app["deployments"].items():
        running = sum(r["state"] == "RUNNING" for r in deployment.get("replicas", []))
        counts[name] = (running, int(deployment.get("target_num_replicas") or 0))
    return counts


def status_lines(serve_details: dict, name: str | None = None) -> list[str]:
    """What `colorize jobs serve` prints: each application, its deployments and replicas."""
    apps = serve_details.get("applications") or {}
    if name is not None:
        if name not in apps:
            raise ColorizeError(f"no Serve application {name!r} on the cluster "
                                f"(deployed: {', '.join(apps) or 'none'})")
        apps = {name: apps[name]}
    if not apps:
        return ["no Serve applications on the cluster (deploy one: colorize submit serve MODEL)"]
    port = (serve_details.get("http_options") or {}).get("port")
    lines = []
    for app in apps.values():
        lines.append(f"{app['name']}: {app['status']}  route {app.get('route_prefix') or '-'}  "
                     f"port {port}")
        if app.get("message"):
            lines.append(f"  message: {_last_line(app['message'])}")
        for dep_name, (running, target) in replica_counts(app).items():
            scaling = app["deployments"][dep_name]["deployment_config"].get("autoscaling_config")
            bounds = f" (autoscaling {scaling['min_replicas']}-{scaling['max_replicas']})" \
                if scaling else ""
            state = app["deployments"][dep_name]["status"]
            lines.append(f"  {dep_name}: {state}, {running} of {target} replicas running{bounds}")
    return lines
