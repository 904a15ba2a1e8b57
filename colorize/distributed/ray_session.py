"""Joining Ray: one way for every command (tune, train, serve, pipeline) to get a Ray instance.

With an address it joins that cluster; without one it starts a local instance
(`address="local"`, which never attaches to another cluster running on the same machine)
with its dashboard bound to 127.0.0.1; a process that already has Ray reuses it. The
process's signal handlers are kept (see colorize/signals.py).

The workers' output (Tune trials, Ray Train workers, Serve replicas) is sent to this
driver (`log_to_driver`, Ray's default), so their warnings, errors and tracebacks reach the
console and, under `colorize submit`, the job's logs. They train silently (Keras verbose=0,
TensorFlow's C++ logs at TF_CPP_MIN_LOG_LEVEL=2, which the local workers inherit, and
`quiet_worker_logs` for the INFO lines of TensorFlow, Ray Train's and Tune's per-epoch
reports and MLflow), so per-epoch progress is the driver's own line or trial table, not
the workers' chatter; what stays is each worker's start-up and its warnings and errors.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from colorize import signals
from colorize.errors import ColorizeError
from colorize.signals import keep_handlers

# Loggers whose INFO lines a worker repeats every epoch (Ray Train's "Reporting training
# result ..." and "Checkpoint successfully created ...", TensorFlow's collective all-reduce
# notes) or at every start (MLflow's store set-up).
QUIET_IN_WORKERS = ("tensorflow", "absl", "ray.train", "ray.tune", "mlflow")


def quiet_worker_logs() -> None:
    """In a Ray worker (a Train worker, a Tune trial): those loggers at WARNING, so what the
    worker sends to the driver is its warnings and errors, not its per-epoch INFO lines."""
    import os

    import ray.train

    for name in QUIET_IN_WORKERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Ray Train names some loggers by their file's path, not under "ray.train" (its
    # "Reporting training result N: ..." line, per worker per epoch, is one of them).
    package = os.path.dirname(ray.train.__file__)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(package):
            logging.getLogger(name).setLevel(logging.WARNING)


def connect(address: str | None = None, log_to_driver: bool = True,
            **local_options: Any) -> tuple[bool, str | None]:
    """(whether this call started Ray, the dashboard URL when Ray knows one).

    `local_options` (num_cpus, dashboard_port, ...) apply only when a local instance is
    started. A failure to start or reach Ray is a ColorizeError naming the address.
    `log_to_driver=False` keeps the workers' output in Ray's log files only.
    """
    import ray

    if ray.is_initialized():
        from colorize.distributed import ray_compat

        return False, _http(ray_compat.dashboard_url())
    options: dict[str, Any] = {"address": address or "local", "log_to_driver": log_to_driver}
    if options["address"] == "local":
        options.update(include_dashboard=True, dashboard_host="127.0.0.1")
        options.update({k: v for k, v in local_options.items() if v is not None})
    try:
        # ray.init installs a SIGTERM handler (kill the node, exit 1): the CLI's own clean
        # stop does that too, and says so; elsewhere Ray's stays.
        with keep_handlers() if signals.installed() else contextlib.nullcontext():
            context = ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ColorizeError(f"could not start or reach Ray at {options['address']!r}: {exc}") from None
    return True, _http(getattr(context, "dashboard_url", None))


def _http(url: str | None) -> str | None:
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def limit_tf_threads(cpus: float | None = None) -> None:
    """TensorFlow's thread pools sized to this Ray worker's CPUs (`cpus`, default: the ones
    Ray assigned it): by default each trial, worker or actor would use every core of its
    node, and several on a node thrash. Two inter-op threads let the input pipeline run
    beside the step. Call before TensorFlow runs an op; afterwards it keeps its settings
    (a reused actor)."""
    import ray
    import tensorflow as tf

    if cpus is None:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
    threads = int(cpus or 0)
    if threads >= 1:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(2)
        except RuntimeError:  # TensorFlow already initialised in this process
            pass
