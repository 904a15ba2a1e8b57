"""Ray Train scale-out: the final model trained data-parallel on N workers, then finalised.

run_training() prepares the data once on the driver, puts one training shard per worker
and the whole validation set in the object store, and starts a `TensorflowTrainer`
(Ray Train v2). Each worker runs `colorize.distributed.train_worker.train_loop_per_worker`, a thin
adapter around the one training function `colorize.training.fit` under
`MultiWorkerMirroredStrategy`, whose `RayReport` callback reports each epoch:

- batches: every worker takes `config.batch_size` images a step from its own shard, so
  the global batch is batch_size x workers; the learning rate follows `lr_scaling`
  ("sqrt" by default: lr x sqrt(workers), the rule suited to Adam; "linear" or "none").
- early stopping: every worker scores the same full validation set with the same
  weights, and rank 0's val_ssim and val_monitor are broadcast before the early-stopping callback reads
  it, so all workers stop at the same epoch.
- fault tolerance: `ray.train.report` each epoch with a checkpoint (rank 0's weights,
  best weights, epoch and history); `FailureConfig(max_failures)` restarts the worker
  group from the latest one, and rerunning with the same storage path and name resumes.

- names and logs: the Ray Train run is named after `name` (default: the --out folder's name),
  its checkpoints under STORAGE/NAME; rank 0 writes TensorBoard logs (OUT/tensorboard, as
  `colorize fit` does) and a CSV row per epoch (OUT/epochs.csv), and logs to MLflow or
  Weights & Biases where `loggers` asks (colorize/distributed/tracking.py). The workers' own output
  (warnings, errors, tracebacks) reaches the driver's console and a job's logs.

Afterwards the driver loads the best weights from the last checkpoint and hands them to
`colorize.fit_run.finalize` (test evaluation, artifact, plots, results figure) and
`colorize.report.write_report` (the one-page HTML report).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from colorize import signals, testing
from colorize.config import TrainConfig
from colorize.distributed import ray_compat, tracking, train_worker
from colorize.distributed import storage as remote
from colorize.distributed.ray_session import connect
from colorize.errors import ColorizeError
from colorize.presets import ConfigSource

log = logging.getLogger(__name__)

LR_SCALING = ("sqrt", "linear", "none")
RUN_NAME = "train"  # the Ray Train run name of runs started before runs were named after --out


def run_name(out_dir: Path, storage: str) -> str:
    """The Ray Train run's default name: the output folder's name (letters, digits, '.', '_'
    and '-'), or RUN_NAME where a run of that older name is in storage (so it resumes)."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", out_dir.name).strip("-._") or RUN_NAME
    if remote.exists(remote.join(storage, RUN_NAME)) and not remote.exists(remote.join(storage, name)):
        return RUN_NAME
    return name

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
    name: str | None = None,
    storage: str | Path | None = None,
    cpus_per_worker: float = 1,
    lr_scaling: str = "sqrt",
    max_failures: int = 2,
    autoscale: bool = False,
    cache_dir: str | Path | None = None,
    loggers: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train `source.config` on `workers` Ray Train workers; finalize and write the report.

    Returns the metrics (as in metrics.json) plus "artifact" and "report" paths. Rerunning
    with the same out_dir (storage) and name resumes from the last checkpoint. `name` (the
    Ray Train run's) defaults to the output folder's; `loggers` (colorize.distributed.tracking.LOGGERS)
    add MLflow or W&B to the TensorBoard and CSV logs rank 0 always writes.
    """
    import ray

    from colorize.prepared_data import prepare_data

    out_dir = Path(out_dir).expanduser().resolve()
    storage = remote.resolve(storage) if storage else str(out_dir / "ray")  # a folder or a URI
    name = name or run_name(out_dir, storage)
    logging_settings = tracking.train_settings(loggers, name, out_dir)  # a missing extra: now
    scaled_learning_rate(source.config.learning_rate, max(workers, 1), lr_scaling)  # validates
    started_ray, _ = connect(address)
    try:
        check_resources(workers, use_gpu, cpus_per_worker, autoscale)
        started = time.time()
        prepared = prepare_data(data_source, source.config, cache_dir)
        log.info("data: %s", json.dumps(prepared.info()))
        result = train_on_ray(
            source.config, prepared, storage, name, workers, use_gpu, cpus_per_worker,
            lr_scaling, max_failures, logging_settings,
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
                "storage": remote.join(storage, name),
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
    storage: str,
    name: str,
    workers: int,
    use_gpu: bool = False,
    cpus_per_worker: float = 1,
    lr_scaling: str = "sqrt",
    max_failures: int = 2,
    logging_settings: dict | None = None,
):
    """Run the TensorflowTrainer on `prepared` data; the Ray Train Result (raises ColorizeError).
    `logging_settings` (colorize.distributed.tracking.train_settings) are rank 0's logs; None: none."""
    import ray
    import ray.train
    from ray.train.tensorflow import TensorflowTrainer

    train_tiles = prepared.tiles("train")
    shards = [ray.put(train_tiles[idx]) for idx in shard_indices(len(train_tiles), workers, config.seed)]
    progress = EpochLines(config.epochs, config.max_minutes)
    loop_config = {
        "config": worker_config(config, len(train_tiles), workers, lr_scaling).to_dict(),
        "shards": shards,
        "val": ray.put(prepared.tiles("val")),
        "cpus_per_worker": cpus_per_worker,
        "progress": progress.queue,
        "tracking": logging_settings,
    }
    resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    # The trackers' settings (MLFLOW_*, WANDB_*) and a test's hooks (none unless a test set one)
    env = {**(tracking.worker_env() if logging_settings else {}), **testing.worker_env()}
    trainer = _stoppable(TensorflowTrainer)(
        train_worker.train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(  # type: ignore[call-arg]  # Train v2's; mypy sees v1's class
            name=name,
            storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"env_vars": env} if env else None,
            # Ray Train's own console lines at WARNING: its INFO ones repeat every report
            # ("Reporting training result N: ...", per worker per epoch); our epoch line says it
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    log.info("training on %d worker(s), storage %s/%s", workers, storage, name)
    with signals.stage(
        f"training on {workers} Ray Train worker(s)",
        f"the last epochs' checkpoints are in {remote.join(storage, name)}: rerun the same command to resume",
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
        raise ColorizeError(f"the run {remote.join(storage, name)} finished without a checkpoint", status=500)
    return result


class EpochLines:
    """The driver's line per epoch (`training.epoch_line`) from rank 0's reports.

    The workers train silently (verbose=0; their warnings and errors do reach the console,
    prefixed by Ray with the worker), so rank 0 puts each epoch's metrics in a queue (a
    zero-CPU actor) and a thread of the driver logs them as they come, once per epoch with
    the time left estimated from the pace of the epochs. Use as a context manager around the
    trainer's fit().
    """

    def __init__(self, epochs: int, max_minutes: float = 0.0):
        from ray.util.queue import Queue

        self.epochs, self.max_minutes = epochs, max_minutes
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
            ray.kill(self.queue.actor)  # type: ignore[arg-type]  # an actor handle at run time

    def _run(self) -> None:
        from ray.util.queue import Empty

        from colorize.training import ELAPSED_KEY, epoch_line, time_left

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
            left = time_left(sum(pace) / len(pace), self.epochs - epoch, self.max_minutes,
                             metrics.get(ELAPSED_KEY, 0.0))
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

    return ray_compat.on_train_sigint(trainer_class, register)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _restore_best(config: TrainConfig, checkpoint):
    """The model with the best weights of the run's last checkpoint, and its history."""
    from colorize import checkpoint as ckpt
    from colorize.model import build_unet

    model = build_unet(config)  # inference only: no optimizer state to restore
    with checkpoint.as_directory() as directory:
        epochs, history = ckpt.load_checkpoint(directory, model)
        ckpt.load_best(directory, model)
    log.info("restored the best weights after %d epoch(s) from %s", epochs, checkpoint.path)
    return model, history


def _finish(out_dir: Path, model, source: ConfigSource, history, prepared, train_seconds, extra) -> dict:
    from colorize.fit_run import finalize
    from colorize.report import write_report

    metrics = finalize(out_dir, model, source.config, history, prepared, train_seconds, extra)
    (out_dir / "source.json").write_text(json.dumps(source.to_dict(), indent=2))
    report = write_report(out_dir, source)
    return {**metrics, "artifact": str(out_dir / "model"), "report": str(report)}
