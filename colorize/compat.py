"""Every use of a private Keras name, in one place (Ray's: colorize/distributed/ray_compat.py).

Each function below reaches into something Keras does not promise to keep. They were
checked on the versions in `CHECKED`; `PRIVATE_NAMES` lists each name with the reason it is
used, and tests/test_compat.py resolves every one of them and checks its signature, so an
upgrade that moves or changes one fails there, loudly, instead of in a cluster run. Nothing
here is imported at module load: Keras loads only when a function is called.

To add one: a function here, an entry in `PRIVATE_NAMES`, a check in tests/test_compat.py.
"""

from __future__ import annotations

import importlib
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

    setattr(reduce_per_replica, "_colorize_patched", True)  # noqa: B010 (a marker on a function)
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
    trainer.reduce_per_replica = reduce_per_replica


def resume_early_stopping(callback, best: float, best_epoch: int, wait: int) -> None:
    """Seed a `keras.callbacks.EarlyStopping` (after its on_train_begin) with the state of
    the epochs before a resume: its best score, that score's epoch and the epochs since."""
    callback.best, callback.best_epoch, callback.wait = best, best_epoch, wait


def ema_pairs(optimizer) -> list:
    """(model weight, its moving average) for an optimizer built with `use_ema=True`."""
    return list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average, strict=True))
