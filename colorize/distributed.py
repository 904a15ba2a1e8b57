"""Ray Train scale-out: the final model trained data-parallel on N workers, then finalised.

run_training() prepares the data once on the driver, puts one training shard per worker
and the whole validation set in the object store, and starts a `TensorflowTrainer`
(Ray Train v2). Each worker runs `train_loop_per_worker`, a thin adapter around the one
training function `colorize.training.fit` under `MultiWorkerMirroredStrategy`:

- batches: every worker takes `config.batch_size` images a step from its own shard, so
  the global batch is batch_size x workers; the learning rate follows `lr_scaling`
  ("sqrt" by default: lr x sqrt(workers), the rule suited to Adam; "linear" or "none").
- early stopping: every worker scores the same full validation set with the same
  weights, and rank 0's val_ssim and val_monitor are broadcast before the early-stopping callback reads
  it, so all workers stop at the same epoch.
- fault tolerance: `ray.train.report` each epoch with a checkpoint (rank 0's weights,
  best weights, epoch and history); `FailureConfig(max_failures)` restarts the worker
  group from the latest one, and rerunning with the same storage path and name resumes.

Afterwards the driver loads the best weights from the last checkpoint and hands them to
`colorize.fit_job.finalize` (test evaluation, artifact, plots, results figure) and
`colorize.report.write_report` (the one-page HTML report).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from colorize import compat, signals
from colorize.config import TrainConfig
from colorize.errors import ColorizeError
from colorize.experiment import ConfigSource
from colorize.ray_session import connect
from colorize.training import ELAPSED_KEY, MONITOR_KEY

log = logging.getLogger(__name__)

LR_SCALING = ("sqrt", "linear", "none")
RUN_NAME = "train"  # Ray Train run name under the storage path

# Test-only hook: the last worker raises once at the end of this epoch (1-based), after
# that epoch's checkpoint is reported; the marker file makes it happen only once.
FAIL_AT_ENV = "COLORIZE_TEST_FAIL_ONCE_AT_EPOCH"
FAIL_MARKER_ENV = "COLORIZE_TEST_FAIL_MARKER"


def scaled_learning_rate(learning_rate: float, workers: int, rule: str = "sqrt") -> float:
    """The tuned (single-worker) learning rate adapted to a batch `workers` times larger."""
    if rule not in LR_SCALING:
        raise ColorizeError(f"unknown learning-rate rule {rule!r} (choose {', '.join(LR_SCALING)})")
    factor = {"sqrt": math.sqrt(workers), "linear": float(workers), "none": 1.0}[rule]
    return learning_rate * factor


def shard_indices(count: int, workers: int, seed: int) -> list[np.ndarray]:
    """A shuffled, near-equal split of range(count) into one index set per worker."""
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(order[rank::workers]) for rank in range(workers)]


def worker_config(config: TrainConfig, train_count: int, workers: int, lr_scaling: str) -> TrainConfig:
    """The configuration each worker trains with: scaled learning rate, fixed step count.

    Every worker must run the same number of steps (the all-reduce is collective), so the
    epoch length is set from the whole training set and the global batch.
    """
    steps = config.steps_per_epoch or max(1, math.ceil(train_count / (config.batch_size * workers)))
    return TrainConfig.from_dict(
        {
            "learning_rate": scaled_learning_rate(config.learning_rate, workers, lr_scaling),
            "steps_per_epoch": steps,
        },
        config,
    )


# --- on each worker -----------------------------------------------------------------------


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: its shard, the full validation set, `fit` under MWMS."""
    import ray
    import ray.train
    import tensorflow as tf

    # The strategy must exist before TensorFlow runs any op (TF_CONFIG is set by Ray).
    threads = max(1, int(loop_config.get("cpus_per_worker", 1)))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(2, threads))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    compat.patch_keras_multi_worker()

    from colorize import data, training

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    config = TrainConfig.from_dict(loop_config["config"])
    shard = ray.get(loop_config["shards"][rank])
    val_tiles = ray.get(loop_config["val"])
    # The dataset is batched at the global batch size; tf.distribute hands each worker
    # batch_size of it per step. Auto-sharding is off: the shard is already this worker's.
    train_ds = data.make_dataset(
        shard, config.image_size, config.batch_size * world, config.seed + rank, training=True
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    train_ds = train_ds.with_options(options)

    with tempfile.TemporaryDirectory(prefix="colorize-worker-") as tmp:
        checkpoint_dir = Path(tmp) / "checkpoint"
        start_epoch = _restore(ray.train.get_checkpoint(), checkpoint_dir)
        images_per_epoch = config.steps_per_epoch * config.batch_size * world
        callbacks = [RayReport(checkpoint_dir, rank, start_epoch, images_per_epoch,
                               loop_config.get("progress") if rank == 0 else None)]
        if os.environ.get(FAIL_AT_ENV):
            callbacks.append(FailOnce(int(os.environ[FAIL_AT_ENV]), rank == world - 1))
        training.fit(
            config, shard, val_tiles, callbacks=callbacks, checkpoint_dir=checkpoint_dir,
            verbose=0, strategy=strategy, train_dataset=train_ds,
        )


def _restore(checkpoint, checkpoint_dir: Path) -> int:
    """Copy the run's latest Ray checkpoint (if any) to `checkpoint_dir`; its epoch count."""
    if checkpoint is None:
        return 0
    checkpoint.to_directory(str(checkpoint_dir))
    epoch = json.loads((checkpoint_dir / "state.json").read_text())["epoch"]
    log.info("resuming from %s after epoch %d", checkpoint.path, epoch)
    return int(epoch)


class RayReport(keras.callbacks.Callback):
    """Each epoch: the same val_ssim and val_monitor on every worker, then ray.train.report
    + checkpoint.

    Runs after `fit`'s own checkpoint callback has written this epoch to
    `checkpoint_dir`, and before early stopping reads val_monitor.
    """

    def __init__(self, checkpoint_dir: Path, rank: int, start_epoch: int, images_per_epoch: int,
                 progress=None):
        super().__init__()
        self.checkpoint_dir, self.rank, self.start_epoch = checkpoint_dir, rank, start_epoch
        self.images_per_epoch = images_per_epoch
        self.progress = progress  # a ray.util.queue.Queue the driver prints epoch lines from
        self.started = self.last_step = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.last_step = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_step = time.perf_counter()  # the epoch's training ends at its last step

    def on_epoch_end(self, epoch, logs=None):
        import ray.train
        from ray.train.collective import broadcast_from_rank_zero

        logs = logs if logs is not None else {}
        # Early stopping and the time budget read these: every worker must see rank 0's values.
        for key in ("val_ssim", MONITOR_KEY, ELAPSED_KEY):
            logs[key] = broadcast_from_rank_zero(float(logs.get(key, 0.0)))
        metrics = {key: float(value) for key, value in logs.items()}
        train_seconds = max(self.last_step - self.started, 1e-9)
        metrics.update(
            epoch=epoch + 1,
            start_epoch=self.start_epoch,  # the epoch this worker group resumed after
            train_seconds=train_seconds,  # the epoch's training steps, without validation
            images_per_second=self.images_per_epoch / train_seconds,  # all workers together
        )
        checkpoint = (
            ray.train.Checkpoint.from_directory(str(self.checkpoint_dir)) if self.rank == 0 else None
        )
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{epoch + 1:04d}")
        if self.progress is not None:
            self.progress.put_nowait(metrics)


class FailOnce(keras.callbacks.Callback):
    """Test hook (COLORIZE_TEST_FAIL_ONCE_AT_EPOCH): one worker raises once, after a report."""

    def __init__(self, at_epoch: int, is_victim: bool):
        super().__init__()
        self.at_epoch, self.is_victim = at_epoch, is_victim
        self.marker = Path(os.environ.get(FAIL_MARKER_ENV) or Path(tempfile.gettempdir()) / "colorize-fail-once")

    def on_epoch_end(self, epoch, logs=None):
        if self.is_victim and epoch + 1 == self.at_epoch and not self.marker.exists():
            self.marker.write_text(str(epoch + 1))
            raise RuntimeError(f"test hook: worker failing once at epoch {epoch + 1}")


# --- on the driver ------------------------------------------------------------------------


def check_resources(workers: int, use_gpu: bool, cpus_per_worker: float, autoscale: bool) -> None:
    """Refuse, before starting, a worker count the running cluster cannot place."""
    import ray

    if workers < 1:
        raise ColorizeError(f"--workers must be at least 1, got {workers}")
    if autoscale:
        return
    total = ray.cluster_resources()
    needs = {"CPU": workers * cpus_per_worker, "GPU": workers if use_gpu else 0}
    for resource, needed in needs.items():
        if needed and total.get(resource, 0) < needed:
            raise ColorizeError(
                f"{workers} worker(s) need {needed:g} {resource}(s) but the Ray cluster has "
                f"{total.get(resource, 0):g}: use fewer --workers (or --cpus-per-worker), a "
                "bigger cluster (--address), or --autoscale if the cluster adds nodes on demand"
            )


def run_training(
    source: ConfigSource,
    data_source: str | Path | list[str],
    out_dir: str | Path,
    workers: int = 2,
    use_gpu: bool = False,
    address: str | None = None,
    name: str = RUN_NAME,
    storage: str | Path | None = None,
    cpus_per_worker: float = 1,
    lr_scaling: str = "sqrt",
    max_failures: int = 2,
    autoscale: bool = False,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train `source.config` on `workers` Ray Train workers; finalize and write the report.

    Returns the metrics (as in metrics.json) plus "artifact" and "report" paths. Rerunning
    with the same out_dir (storage) and name resumes from the last checkpoint.
    """
    import ray

    from colorize.fit_job import prepare_data

    out_dir = Path(out_dir).expanduser().resolve()
    storage = Path(storage).expanduser().resolve() if storage else out_dir / "ray"
    scaled_learning_rate(source.config.learning_rate, max(workers, 1), lr_scaling)  # validates
    started_ray, _ = connect(address)
    try:
        check_resources(workers, use_gpu, cpus_per_worker, autoscale)
        started = time.time()
        prepared = prepare_data(data_source, source.config, cache_dir)
        log.info("data: %s", json.dumps(prepared.info()))
        result = train_on_ray(
            source.config, prepared, storage, name, workers, use_gpu, cpus_per_worker,
            lr_scaling, max_failures,
        )
        model, history = _restore_best(source.config, result.checkpoint)
        train_seconds = time.time() - started
        effective = worker_config(source.config, len(prepared.tiles("train")), workers, lr_scaling)
        extra = {
            "distributed": {
                "workers": workers, "use_gpu": use_gpu, "cpus_per_worker": cpus_per_worker,
                "global_batch": source.config.batch_size * workers,
                "learning_rate": effective.learning_rate, "lr_scaling": lr_scaling,
                "steps_per_epoch": effective.steps_per_epoch,
                "storage": str(storage / name),
                "resumed_after_epoch": int((result.metrics or {}).get("start_epoch", 0)),
                "last_epoch_images_per_second": (result.metrics or {}).get("images_per_second"),
            },
            "config_source": {"kind": source.kind, "path": source.path},
        }
    finally:
        if started_ray:
            ray.shutdown()
    return _finish(out_dir, model, source, history, prepared, train_seconds, extra)


def train_on_ray(
    config: TrainConfig,
    prepared,
    storage: Path,
    name: str,
    workers: int,
    use_gpu: bool = False,
    cpus_per_worker: float = 1,
    lr_scaling: str = "sqrt",
    max_failures: int = 2,
):
    """Run the TensorflowTrainer on `prepared` data; the Ray Train Result (raises ColorizeError)."""
    import ray
    import ray.train
    from ray.train.tensorflow import TensorflowTrainer

    train_tiles = prepared.tiles("train")
    shards = [ray.put(train_tiles[idx]) for idx in shard_indices(len(train_tiles), workers, config.seed)]
    progress = EpochLines(config.epochs)
    loop_config = {
        "config": worker_config(config, len(train_tiles), workers, lr_scaling).to_dict(),
        "shards": shards,
        "val": ray.put(prepared.tiles("val")),
        "cpus_per_worker": cpus_per_worker,
        "progress": progress.queue,
    }
    resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    test_env = {k: os.environ[k] for k in (FAIL_AT_ENV, FAIL_MARKER_ENV) if k in os.environ}
    trainer = _stoppable(TensorflowTrainer)(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"env_vars": test_env} if test_env else None,
        ),
    )
    log.info("training on %d worker(s), storage %s/%s", workers, storage, name)
    with signals.stage(
        f"training on {workers} Ray Train worker(s)",
        f"the last epochs' checkpoints are in {storage / name}: rerun the same command to resume",
    ):
        try:
            with signals.keep_handlers(), progress:  # Ray Train's SIGINT handler would outlive fit()
                result = trainer.fit()
        except Exception as exc:  # Ray wraps worker errors; one line for the user, details logged
            if signals.requested():  # the run was aborted on Ctrl-C/SIGTERM
                raise signals.stopped() from None
            log.debug("Ray Train failed", exc_info=True)
            raise ColorizeError(f"distributed training failed: {_first_line(exc)}", status=500) from exc
        if signals.requested():
            raise signals.stopped()
    if result.checkpoint is None:
        raise ColorizeError(f"the run {storage / name} finished without a checkpoint", status=500)
    return result


class EpochLines:
    """The driver's line per epoch (`training.epoch_line`) from rank 0's reports.

    The workers' own output does not reach the console (Ray is started with
    log_to_driver=False), so rank 0 puts each epoch's metrics in a queue (a zero-CPU actor)
    and a thread of the driver logs them as they come, with the time left estimated from
    the pace of the epochs. Use as a context manager around the trainer's fit().
    """

    def __init__(self, epochs: int):
        from ray.util.queue import Queue

        self.epochs = epochs
        self.queue = Queue(actor_options={"num_cpus": 0})
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="epoch-lines", daemon=True)

    def __enter__(self) -> EpochLines:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        import ray

        with contextlib.suppress(Exception):  # Ray may already be going down after a stop
            ray.kill(self.queue.actor)

    def _run(self) -> None:
        from ray.util.queue import Empty

        from colorize.training import epoch_line

        last, durations = time.monotonic(), []
        while True:
            try:
                metrics = self.queue.get(timeout=0.5)
            except Empty:
                if self.done.is_set():  # fit() returned and every report is printed
                    return
                continue
            except Exception:  # the queue is gone: Ray shut down under us
                return
            now = time.monotonic()
            durations.append(now - last)
            last = now
            epoch = int(metrics["epoch"])
            pace = durations[1:][-5:] or durations  # the first also holds the workers' start-up
            left = sum(pace) / len(pace) * (self.epochs - epoch)
            log.info("%s", epoch_line(epoch, self.epochs, metrics,
                                      metrics.get("images_per_second", 0.0), left))


def _stoppable(trainer_class):
    """`trainer_class` whose run the CLI's first Ctrl-C or SIGTERM aborts gracefully.

    Ray Train v2 installs its own SIGINT handler when fit() starts (abort the controller,
    then sys.exit(0), which would end the command with exit code 0). Under the CLI's stop
    handler (colorize/signals.py) the abort is registered as the running stage's graceful
    stop instead; elsewhere Ray's handler is kept.
    """

    def register(controller) -> bool:
        current = signals.current_stage()
        if not signals.installed() or current is None:
            return False

        def abort() -> bool:
            controller.abort.remote()  # checkpoints stay; the run ends as ABORTED
            return True

        current.on_stop = abort
        return True

    return compat.on_train_sigint(trainer_class, register)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _restore_best(config: TrainConfig, checkpoint):
    """The model with the best weights of the run's last checkpoint, and its history."""
    from colorize import training
    from colorize.model import build_unet

    model = build_unet(config)  # inference only: no optimizer state to restore
    with checkpoint.as_directory() as directory:
        epochs, history = training.load_checkpoint(directory, model)
        best = Path(directory) / training.BEST_WEIGHTS
        if best.exists():
            model.load_weights(best)
    log.info("restored the best weights after %d epoch(s) from %s", epochs, checkpoint.path)
    return model, history


def _finish(out_dir: Path, model, source: ConfigSource, history, prepared, train_seconds, extra) -> dict:
    from colorize.fit_job import finalize
    from colorize.report import write_report

    metrics = finalize(out_dir, model, source.config, history, prepared, train_seconds, extra)
    (out_dir / "source.json").write_text(json.dumps(source.to_dict(), indent=2))
    report = write_report(out_dir, source)
    return {**metrics, "artifact": str(out_dir / "model"), "report": str(report)}
