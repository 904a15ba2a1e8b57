"""Every use of a private Ray name, in one place (Keras's: colorize/compat.py).

As in compat.py: each function below reaches into something Ray does not promise to keep,
`PRIVATE_NAMES` says why each is used, and tests/test_compat.py resolves every one of them
on the installed Ray (checked on `compat.CHECKED`'s version). Ray loads only when a function
is called.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from colorize.compat import PrivateName

PRIVATE_NAMES = (
    PrivateName("ray.dashboard.modules.job.sdk:JobSubmissionClient._address",
                "the submission clients do not expose the dashboard URL they resolved: "
                "`client_address`", on_instances=True),
    PrivateName("ray.dashboard.modules.job.sdk:JobSubmissionClient._upload_working_dir_if_needed",
                "the Serve REST API takes only remote URIs; the jobs client's upload is the "
                "one that packages a local folder: `upload_runtime_env`"),
    PrivateName("ray.dashboard.modules.job.sdk:JobSubmissionClient._upload_py_modules_if_needed",
                "the same, for an installed (wheel) package shipped as py_modules"),
    PrivateName("ray._private.worker:get_dashboard_url",
                "no public way to read the dashboard URL once Ray is initialised: "
                "`dashboard_url`"),
    PrivateName("ray.serve.context:_get_global_client",
                "serve.run does not say which HTTP host and port a running Serve kept: "
                "`serve_http_address`"),
    PrivateName("ray.serve._private.client:ServeControllerClient.get_serve_details",
                "with direct ingress each replica listens on a port Serve allocates, and only "
                "the instance details name it: `direct_ingress_ports`"),
    PrivateName("ray.serve._private.constants:RAY_SERVE_ENABLE_DIRECT_INGRESS",
                "the environment flag behind `colorize serve --ingress direct` "
                "(serve/runner.py: `direct_ingress_env`); Ray reads it when its processes start"),
    PrivateName("ray.serve._private.constants:RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT",
                "the first port a direct-ingress replica takes (set to --port + 1)"),
    PrivateName("ray.serve._private.constants:RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S",
                "how long a stopping direct-ingress replica stays open for a load balancer"),
    PrivateName("ray._private.ray_constants:ENABLE_RAY_CLUSTER",
                "Ray swaps 127.0.0.1 for the routable address (ray-project/ray#59110); "
                "`ray_start_on_loopback` lets a worker join with that swap off"),
    PrivateName("ray._private.services:resolve_ip_for_localhost", "the same issue"),
    PrivateName("ray.scripts.scripts:main", "`ray start` run in-process after that patch"),
    PrivateName("ray.train.v2.api.data_parallel_trainer:DataParallelTrainer._register_sigint_handler",
                "Ray Train v2's SIGINT handler ends the process with exit code 0 "
                "(sys.exit(0)); `on_train_sigint` lets the CLI stop a run its own way"),
)


def client_address(client) -> str:
    """The dashboard URL a Job/Serve SubmissionClient resolved its address to."""
    return client._address


def upload_runtime_env(client, env: dict) -> None:
    """Upload `env`'s local working_dir (or py_modules) to the cluster as the jobs client
    does for submit_job (content-addressed gcs:// packages, skipped when already there),
    rewriting `env` in place to the uploaded URIs."""
    if "working_dir" in env:
        client._upload_working_dir_if_needed(env)
    else:
        client._upload_py_modules_if_needed(env)


def dashboard_url() -> str | None:
    """The dashboard URL of the Ray instance this process has joined."""
    from ray._private.worker import get_dashboard_url

    return get_dashboard_url()


def serve_http_address() -> tuple[str, int]:
    """The host and port of the running Serve proxy (which keeps its first ones)."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise RuntimeError("Serve is not running")
    config = client.http_config
    return config.host, int(config.port)


def direct_ingress_ports(app_name: str) -> list[int]:
    """The HTTP ports the application's ingress replicas listen on under direct ingress
    (Serve's target groups); with Serve's proxy in front, the proxy's port."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise RuntimeError("Serve is not running")
    details = client.get_serve_details()
    return sorted(int(target["port"]) for group in details.get("target_groups", [])
                  if group.get("app_name") == app_name and str(group.get("protocol")).endswith("HTTP")
                  for target in group.get("targets", []))


def ray_start_on_loopback(argv: list[str]) -> None:
    """`ray start ARGV` in this process, keeping 127.0.0.1 as given (ray-project/ray#59110).

    The node processes inherit RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 so Ray resolves its own
    address to 127.0.0.1; only this launcher turns the flag back on, because `ray start`
    refuses to add a worker node while it is off.
    """
    from ray._private import ray_constants, services
    from ray.scripts.scripts import main

    ray_constants.ENABLE_RAY_CLUSTER = True
    services.resolve_ip_for_localhost = lambda host: host
    sys.argv = ["ray", "start", *argv]
    main()


def on_train_sigint(trainer_class: type, register: Callable[[Any], bool]) -> type:
    """`trainer_class` (a Ray Train v2 trainer) whose SIGINT handling starts by calling
    `register(controller)`: when that returns True, Ray's own handler (abort, then
    sys.exit(0)) is not installed; otherwise it is, as usual."""

    class Trainer(trainer_class):
        def _register_sigint_handler(self, controller):
            if not register(controller):
                super()._register_sigint_handler(controller)

    Trainer.__name__ = Trainer.__qualname__ = trainer_class.__name__
    return Trainer
