"""Every use of a private Keras or Ray name, in one place.

Each function below reaches into something Keras or Ray does not promise to keep. They were
checked on the versions in `CHECKED`; `PRIVATE_NAMES` lists each name with the reason it is
used, and tests/test_compat.py resolves every one of them and checks its signature, so an
upgrade that moves or changes one fails there, loudly, instead of in a cluster run. Nothing
here is imported at module load: Keras and Ray load only when a function is called.

To add one: a function here, an entry in `PRIVATE_NAMES`, a check in tests/test_compat.py.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CHECKED = {"ray": "2.60.0", "keras": "3.15.1"}  # the versions every entry was checked on


@dataclass(frozen=True)
class PrivateName:
    name: str  # "module:attribute.attribute"
    why: str  # what public API is missing (the upstream reason)
    on_instances: bool = False  # the last part is set by __init__, not found on the class


PRIVATE_NAMES = (
    PrivateName("keras.src.backend.tensorflow.trainer:TensorFlowTrainer._maybe_symbolic_build",
                "Keras 3 fit() under MultiWorkerMirroredStrategy reduces a tuple of PerReplica "
                "batches (keras-team/keras#20585): `patch_keras_multi_worker`"),
    PrivateName("keras.src.backend.tensorflow.trainer:reduce_per_replica",
                "the same issue: per-step scalars averaged with axis=0 across workers"),
    PrivateName("keras.src.backend.tensorflow.trainer:_collective_all_reduce_multi_worker",
                "tells the multi-worker strategy apart inside the patched reduce"),
    PrivateName("keras.src.optimizers.base_optimizer:BaseOptimizer._update_model_variables_moving_average",
                "Keras's weight average (use_ema) has no start-up correction and no hook for one: "
                "`training.AveragedAdam` overrides this per-step update"),
    PrivateName("keras.src.optimizers.base_optimizer:BaseOptimizer._model_variables_moving_average",
                "the averages themselves, paired with `_trainable_variables`, have no public "
                "accessor: `ema_pairs` and that override", on_instances=True),
    PrivateName("keras.src.optimizers.base_optimizer:BaseOptimizer._get_variable_index",
                "Keras 3 optimizers take one learning rate for every variable; the pretrained "
                "encoder's own rate (`training.AveragedAdam`) looks each variable up by it"),
    PrivateName("keras.callbacks:EarlyStopping.best",
                "EarlyStopping has no API to resume its state (best, best_epoch, wait): "
                "`resume_early_stopping`", on_instances=True),
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


def resolve(entry: PrivateName) -> Any:
    """The object `entry` names, or for an instance attribute the class that sets it;
    AttributeError or ImportError when the installed version lacks it."""
    module_name, _, path = entry.name.partition(":")
    parts = path.split(".")
    target: Any = importlib.import_module(module_name)
    for part in parts[:-1] if entry.on_instances else parts:
        target = getattr(target, part)
    return target


# --- Keras --------------------------------------------------------------------------------


def patch_keras_multi_worker() -> None:
    """Work around Keras 3's `fit` under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    With more than one worker, Keras 3.15 fails twice before the first step: (1) it
    builds the model's state from one input batch, a tuple of PerReplica values, which it
    hands to `strategy.reduce`, and the collective strategy cannot reduce a tuple; (2) it
    averages each step's logged scalars with `reduce("MEAN", scalar, axis=0)`. The batch
    only supplies shapes, so (1) takes the local replica's values; (2) averages across
    workers with axis=None. Applied in Ray Train worker processes only; idempotent.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "_colorize_patched", False):
        return
    original_build, original_reduce = (
        trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica
    )

    def local_values(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return tf.distribute.get_strategy().experimental_local_results(value)[0]
        return value

    def build_from_local_batch(self, iterator=None, data_batch=None):
        if self._distribute_strategy is not None and iterator is not None and data_batch is None:
            for _, _, batches in iterator:
                with self._distribute_strategy.scope():
                    data_batch = tf.nest.map_structure(local_values, next(batches))
                break
        return original_build(self, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction == "auto" and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    reduce_per_replica._colorize_patched = True
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
    trainer.reduce_per_replica = reduce_per_replica


def resume_early_stopping(callback, best: float, best_epoch: int, wait: int) -> None:
    """Seed a `keras.callbacks.EarlyStopping` (after its on_train_begin) with the state of
    the epochs before a resume: its best score, that score's epoch and the epochs since."""
    callback.best, callback.best_epoch, callback.wait = best, best_epoch, wait


def ema_pairs(optimizer) -> list:
    """(model weight, its moving average) for an optimizer built with `use_ema=True`."""
    return list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average, strict=True))


# --- Ray ----------------------------------------------------------------------------------


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

    config = _get_global_client().http_config
    return config.host, int(config.port)


def direct_ingress_ports(app_name: str) -> list[int]:
    """The HTTP ports the application's ingress replicas listen on under direct ingress
    (Serve's target groups); with Serve's proxy in front, the proxy's port."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
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
