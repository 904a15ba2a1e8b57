"""colorize/compat.py and colorize/distributed/ray_compat.py: every private Keras or Ray name
they use still exists, with the shape it was written against. A failure here names the entry to re-check after an upgrade."""

import inspect
import subprocess
import sys
from importlib.metadata import version

import pytest
from conftest import ROOT

from colorize import compat
from colorize.distributed import ray_compat


def _versions() -> str:
    """Installed against checked versions, for the failure messages: a newer Ray or Keras is
    not itself an error (the range in pyproject.toml allows it); a changed object is."""
    return ", ".join(f"{p} {version(p)} installed, checked on {v}" for p, v in compat.CHECKED.items())


@pytest.mark.parametrize("entry", compat.PRIVATE_NAMES + ray_compat.PRIVATE_NAMES, ids=lambda e: e.name)
def test_every_private_name_still_exists(entry):
    try:
        compat.resolve(entry)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{entry.name} is gone ({exc}); it was used because {entry.why} ({_versions()})")


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_keras_multi_worker_trainer_functions_keep_their_signatures():
    from keras.src.backend.tensorflow import trainer

    assert _parameters(trainer.TensorFlowTrainer._maybe_symbolic_build) == [
        "self", "iterator", "data_batch"]
    assert _parameters(trainer.reduce_per_replica) == ["values", "strategy", "reduction"]
    assert _parameters(trainer._collective_all_reduce_multi_worker) == ["strategy"]


def test_the_weight_average_update_keeps_its_signature():
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    from colorize.training import AveragedAdam

    assert _parameters(BaseOptimizer._update_model_variables_moving_average) == [
        "self", "trainable_variables"]
    assert "_update_model_variables_moving_average" in vars(AveragedAdam)  # still overridden


def test_the_keras_patch_applies_once_and_leaves_single_worker_fit_alone():
    code = """
import numpy as np, keras
from keras.src.backend.tensorflow import trainer
from colorize import compat
compat.patch_keras_multi_worker()
patched = trainer.reduce_per_replica
compat.patch_keras_multi_worker()
assert trainer.reduce_per_replica is patched and patched._colorize_patched
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
history = model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=2, verbose=0)
print("loss", len(history.history["loss"]))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "loss 2"


def test_early_stopping_resumes_from_the_seeded_state():
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    callback = keras.callbacks.EarlyStopping(monitor="score", mode="max", patience=2)
    callback.set_model(model)
    callback.on_train_begin()
    assert {"best", "best_epoch", "wait"} <= set(vars(callback))
    compat.resume_early_stopping(callback, best=0.9, best_epoch=0, wait=1)
    callback.on_epoch_end(2, {"score": 0.5})  # not better: the second epoch of patience
    assert model.stop_training and callback.best == 0.9 and callback.best_epoch == 0
    model.stop_training = False
    compat.resume_early_stopping(callback, best=0.4, best_epoch=0, wait=1)
    callback.on_epoch_end(2, {"score": 0.5})  # better: patience starts again
    assert not model.stop_training and callback.best == 0.5 and callback.wait == 0


def test_submission_clients_keep_their_address_and_uploads():
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient
    from ray.dashboard.modules.job.sdk import JobSubmissionClient
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    assert "self._address =" in inspect.getsource(SubmissionClient.__init__)
    for client in (JobSubmissionClient, ServeSubmissionClient):
        assert issubclass(client, SubmissionClient)
    for name in ("_upload_working_dir_if_needed", "_upload_py_modules_if_needed"):
        assert _parameters(getattr(SubmissionClient, name)) == ["self", "runtime_env"]


def test_ray_session_and_serve_lookups_keep_their_shape():
    from ray._private.worker import get_dashboard_url
    from ray.serve._private.client import ServeControllerClient
    from ray.serve.context import _get_global_client

    assert _parameters(get_dashboard_url) == []
    assert all(p.default is not inspect.Parameter.empty
               for p in inspect.signature(_get_global_client).parameters.values())
    assert isinstance(inspect.getattr_static(ServeControllerClient, "http_config"), property)


def test_ray_start_on_loopback_names_keep_their_shape():
    from ray._private import ray_constants, services
    from ray.scripts import scripts

    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
    assert _parameters(services.resolve_ip_for_localhost) == ["host"]
    assert "start" in scripts.cli.commands and "return cli()" in inspect.getsource(scripts.main)


def test_train_sigint_hook_overrides_ray_trains_handler():
    from ray.train.tensorflow import TensorflowTrainer
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    assert issubclass(TensorflowTrainer, DataParallelTrainer)  # Ray Train v2
    assert _parameters(DataParallelTrainer._register_sigint_handler) == ["self", "controller"]
    seen = []
    trainer_class = ray_compat.on_train_sigint(TensorflowTrainer, lambda c: seen.append(c) or True)
    assert issubclass(trainer_class, TensorflowTrainer)
    assert trainer_class.__name__ == "TensorflowTrainer"
    trainer = object.__new__(trainer_class)  # no run: only the handler hook is exercised
    trainer._register_sigint_handler("controller")
    assert seen == ["controller"]

