"""What runs on each Ray Train worker: `train_loop_per_worker` (its shard, the full
validation set, `colorize.training.fit` under MultiWorkerMirroredStrategy), `RayReport`,
the callback that reports each epoch with a checkpoint, and on rank 0 only the run's logs
(colorize/distributed/tracking.py: TensorBoard through `fit`'s log_dir as `colorize fit` writes them, a
CSV row per epoch, and `TrackerLogs` for MLflow / W&B). The driver side (data, resources,
the trainer, the report) is colorize/distributed/train_driver.py.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import keras

from colorize import compat, testing
from colorize.config import TrainConfig
from colorize.training import ELAPSED_KEY, MONITOR_KEY

log = logging.getLogger(__name__)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: its shard, the full validation set, `fit` under MWMS (no
    strategy when it is the only worker)."""
    import ray
    import ray.train
    import tensorflow as tf

    from colorize.distributed.ray_session import limit_tf_threads, quiet_worker_logs

    quiet_worker_logs()  # warnings and errors reach the driver; per-epoch INFO lines do not
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # The strategy must exist before TensorFlow runs any op (TF_CONFIG is set by Ray). One
    # worker needs none: its collective all-reduce of every gradient would be pure cost.
    limit_tf_threads(max(1, int(loop_config.get("cpus_per_worker", 1))))
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if world > 1 else None
    compat.patch_keras_multi_worker()

    from colorize import data, training

    config = TrainConfig.from_dict(loop_config["config"])
    shard = ray.get(loop_config["shards"][rank])
    val_tiles = ray.get(loop_config["val"])
    # The dataset is batched at the global batch size; tf.distribute hands each worker
    # batch_size of it per step. Auto-sharding is off: the shard is already this worker's.
    train_ds = data.make_dataset(
        shard, config.image_size, config.batch_size * world, config.seed + rank, training=True,
        zoom=config.zoom,
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    train_ds = train_ds.with_options(options)

    with tempfile.TemporaryDirectory(prefix="colorize-worker-") as tmp:
        checkpoint_dir = Path(tmp) / "checkpoint"
        start_epoch = _restore(ray.train.get_checkpoint(), checkpoint_dir)
        images_per_epoch = config.steps_per_epoch * config.batch_size * world
        callbacks = [RayReport(checkpoint_dir, rank, start_epoch, images_per_epoch,
                               loop_config.get("progress") if rank == 0 else None, world)]
        tracking = loop_config.get("tracking") if rank == 0 else None
        if tracking:  # after RayReport: the logs hold rank 0's broadcast scores by then
            callbacks += tracker_callbacks(tracking, config.to_dict(), resumed=start_epoch > 0)
        callbacks += testing.worker_callbacks(rank, world)  # none unless a test asks
        training.fit(
            config, shard, val_tiles, callbacks=callbacks, checkpoint_dir=checkpoint_dir,
            log_dir=tracking["tensorboard_dir"] if tracking and "tensorboard" in tracking["loggers"] else None,
            verbose=0, strategy=strategy, train_dataset=train_ds,
        )


def _restore(checkpoint, checkpoint_dir: Path) -> int:
    """Copy the run's latest Ray checkpoint (if any) to `checkpoint_dir`; its epoch count."""
    if checkpoint is None:
        return 0
    checkpoint.to_directory(str(checkpoint_dir))
    from colorize import checkpoint as ckpt

    epoch = ckpt.saved_epoch(checkpoint_dir)
    log.info("resuming from %s after epoch %d", checkpoint.path, epoch)
    return int(epoch)


class RayReport(keras.callbacks.Callback):
    """Each epoch: the same val_ssim and val_monitor on every worker, then ray.train.report
    + checkpoint.

    Runs after `fit`'s own checkpoint callback has written this epoch to
    `checkpoint_dir`, and before early stopping reads val_monitor.
    """

    def __init__(self, checkpoint_dir: Path, rank: int, start_epoch: int, images_per_epoch: int,
                 progress=None, world: int = 1):
        super().__init__()
        self.checkpoint_dir, self.rank, self.start_epoch = checkpoint_dir, rank, start_epoch
        self.world = world
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
        # Early stopping and the time budget read these: every worker must see rank 0's values
        # (a lone worker has them already; each broadcast is a round trip through Ray).
        for key in ("val_ssim", MONITOR_KEY, ELAPSED_KEY) if self.world > 1 else ():
            logs[key] = broadcast_from_rank_zero(float(logs.get(key, 0.0)))
        metrics = {key: float(value) for key, value in logs.items()}
        train_seconds = max(self.last_step - self.started, 1e-9)
        metrics.update(
            epoch=epoch + 1,
            start_epoch=self.start_epoch,  # the epoch this worker group resumed after
            train_seconds=train_seconds,  # the epoch's training steps, without validation
            epoch_seconds=time.perf_counter() - self.started,  # the whole epoch, validation included
            images_per_second=self.images_per_epoch / train_seconds,  # all workers together
        )
        checkpoint = (
            ray.train.Checkpoint.from_directory(str(self.checkpoint_dir)) if self.rank == 0 else None
        )
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{epoch + 1:04d}")
        if self.progress is not None:
            self.progress.put_nowait(metrics)


def tracker_callbacks(settings: dict, config: dict, resumed: bool) -> list[keras.callbacks.Callback]:
    """Rank 0's Keras callbacks for `settings` (colorize.distributed.tracking.train_settings): a CSV row
    per epoch, and the MLflow / W&B run. TensorBoard is `training.fit`'s own log_dir."""
    callbacks: list[keras.callbacks.Callback] = []
    if "csv" in settings["loggers"]:
        Path(settings["csv_path"]).parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.CSVLogger(settings["csv_path"], append=resumed))
    if "mlflow" in settings or "wandb" in settings:
        callbacks.append(TrackerLogs(settings, config))
    return callbacks


class TrackerLogs(keras.callbacks.Callback):
    """Each epoch's logs (loss, validation scores, learning rate, elapsed minutes) to the run's
    MLflow run and W&B run, opened with Ray's own `setup_mlflow` / `setup_wandb`. Given to
    rank 0 only, so one worker logs for the run."""

    def __init__(self, settings: dict, config: dict):
        super().__init__()
        self.settings, self.config = settings, config
        self.mlflow: Any = None  # the mlflow module, once set up
        self.wandb: Any = None  # the W&B run

    def on_train_begin(self, logs=None):
        name = self.settings["run_name"]
        if "mlflow" in self.settings:
            from ray.air.integrations.mlflow import setup_mlflow

            self.mlflow = setup_mlflow(
                self.config, run_name=name, create_experiment_if_not_exists=True,
                tags={"colorize.command": "train", "colorize.run": name}, **self.settings["mlflow"],
            )
        if "wandb" in self.settings:
            from ray.air.integrations.wandb import setup_wandb

            wandb = self.settings["wandb"]
            self.wandb = setup_wandb(
                self.config, project=wandb["project"], dir=wandb["dir"], trial_id=wandb["id"],
                trial_name=name, group=name, resume="allow",
                rank_zero_only=False,  # this callback runs on rank 0 only
            )

    def on_epoch_end(self, epoch, logs=None):
        metrics = {}
        for key, value in (logs or {}).items():
            try:
                metrics[key] = float(value)
            except (TypeError, ValueError):
                continue
        if self.mlflow is not None:
            self.mlflow.log_metrics(metrics, step=epoch + 1)
        if self.wandb is not None:
            self.wandb.log({**metrics, "epoch": epoch + 1})

    def on_train_end(self, logs=None):
        if self.mlflow is not None:
            self.mlflow.end_run()
        if self.wandb is not None:
            self.wandb.finish()
