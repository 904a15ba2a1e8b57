"""run_tuning(): the whole search, from options to leaderboard, for the CLI and the pipeline.

1. Check every option, the search space and the data before any trial starts
   (ColorizeError with a message naming the fix).
2. Decode the photos once on the driver, keep the train+validation photos (the test
   split is never seen), cut them into k folds by photo, and put the tiles in the Ray
   object store once (`tune.with_parameters`).
3. Run Tune: OptunaSearch (TPE, seeded, its study kept in SQLite beside the results),
   ASHA (or FIFO), both on the search's metric (`metric`: the cross-validated mean of
   val_ssim, val_psnr or colour_score; by default the one the base configuration's own
   model selection uses), retries from checkpoints; Tune's logger callbacks, plus MLflow or
   Weights & Biases where asked (colorize/distributed/tracking.py). `resume=True` restores the
   experiment (searcher, scheduler, metric and loggers included) and finishes it without
   re-running finished trials.
4. Write trials.csv, best_config.json and the metric's curves (ssim.png for val_ssim) into
   the experiment folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from colorize import signals
from colorize.config import TrainConfig
from colorize.distributed import storage as storage_uri
from colorize.distributed import tracking
from colorize.distributed.ray_session import connect
from colorize.errors import ColorizeError
from colorize.tune import results, search_space
from colorize.tune.trainable import (
    DEFAULT_METRIC,
    METRIC_OF_MONITOR,
    METRICS,
    MODES,
    CVData,
    column,
    train_cv,
)

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "runs/tune"
REQUEST_FILE = "tune_request.json"  # the options of an experiment, read back by --resume
OPTUNA_DB = "optuna.db"
MAX_FAILURES = 2  # retries of a failed trial, each from its last checkpoint
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"  # read by Ray Tune when a search starts


class ExperimentExists(ColorizeError):
    """The experiment folder holds a search with other options."""


@dataclass
class TuneRequest:
    """Every option of a search; saved in the experiment folder so --resume needs only the name."""

    data: str | list[str]  # one folder or 'sample', or several folders
    name: str
    storage: str = DEFAULT_STORAGE
    folds: int = 3
    num_samples: int = 8
    max_epochs: int = 10
    grace_period: int = 1
    reduction_factor: float = 3
    max_concurrent: int = 0  # 0 = as many as the resources allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    scheduler: str = "asha"  # or "fifo": no early stopping (the benchmark's baseline)
    space: dict = field(default_factory=dict)  # the merged search space
    config: dict = field(default_factory=dict)  # the fixed TrainConfig fields
    cache_dir: str | None = None
    metric: str = DEFAULT_METRIC  # what ASHA, Optuna and the leaderboard rank on (METRICS)
    mode: str = "max"
    loggers: list = field(default_factory=list)  # --logger: colorize.distributed.tracking.LOGGERS

    def check(self) -> None:
        problems = []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name or ""):
            problems.append(f"--name must be letters, digits, '.', '_' or '-', got {self.name!r}")
        for option, value, least in (
            ("--folds", self.folds, 2), ("--num-samples", self.num_samples, 1),
            ("--max-epochs", self.max_epochs, 1), ("--grace-period", self.grace_period, 1),
            ("--max-concurrent", self.max_concurrent, 0),
        ):
            if value < least:
                hint = " (k-fold cross-validation needs k >= 2)" if option == "--folds" else ""
                problems.append(f"{option} must be at least {least}, got {value}{hint}")
        if self.grace_period > self.max_epochs:
            problems.append(
                f"--grace-period ({self.grace_period}) must not exceed --max-epochs ({self.max_epochs})"
            )
        if self.reduction_factor <= 1:
            problems.append(f"--reduction-factor must be above 1, got {self.reduction_factor}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            problems.append("--cpus-per-trial must be positive and --gpus-per-trial not negative")
        if self.scheduler not in ("asha", "fifo"):
            problems.append(f"scheduler must be 'asha' or 'fifo', got {self.scheduler!r}")
        if self.metric not in METRICS:
            problems.append(f"--metric must be one of {{{','.join(METRICS)}}}, got {self.metric!r}")
        elif self.metric == "val_calibrated_psnr" and (
                self.config.get("monitor") != "calibrated" or "monitor" in self.space):
            problems.append("--metric val_calibrated_psnr needs --monitor calibrated, not searched "
                            "(the folds calibrate each epoch only under that rule)")
        if self.mode not in MODES:
            problems.append(f"--mode must be one of {{{','.join(MODES)}}}, got {self.mode!r}")
        if problems:
            raise ColorizeError("; ".join(problems))


def run_tuning(
    *,
    data: str | Path | list[str] | None = None,
    name: str,
    storage: str | Path | None = None,
    folds: int | None = None,
    num_samples: int | None = None,
    max_epochs: int | None = None,
    grace_period: int | None = None,
    reduction_factor: float | None = None,
    max_concurrent: int | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    space: str | Path | dict | None = None,
    address: str | None = None,
    resume: bool = False,
    seed: int | None = None,
    config: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    scheduler: str | None = None,
    metric: str | None = None,
    mode: str | None = None,
    loggers: list[str] | tuple[str, ...] = (),
    verbose: int = 1,
    on_dashboard: Callable[[str], None] | None = None,
) -> dict:
    """Run (or with `resume`, finish) the search `name`; the leaderboard and where it lies.

    Returns {"experiment_dir", "best_config" (the best_config.json body, or None), "trials"
    (TrialRecords, best first), "summary" (text table), "dashboard_url", "interrupted",
    "results" (Tune's ResultGrid), "seconds"}. `config` fixes the non-searched TrainConfig
    fields; `seed` (default: config.seed) seeds TPE, the fold split and training. `metric`
    (trainable.METRICS; default: the one `config.monitor` selects epochs on, so val_ssim for
    the seed's rule, val_psnr for the photos recipe's) and `mode` rank the trials; `loggers`
    (colorize.distributed.tracking.LOGGERS) add trackers to Tune's own logs. A resumed search keeps the
    metric, mode and loggers it started with. Options left None take TuneRequest's defaults
    (stated there, once).
    """
    options: dict[str, Any] = {k: v for k, v in dict(
        folds=folds, num_samples=num_samples, max_epochs=max_epochs, grace_period=grace_period,
        reduction_factor=reduction_factor, max_concurrent=max_concurrent,
        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, scheduler=scheduler,
    ).items() if v is not None}
    storage_path = storage_uri.resolve(storage if storage is not None else TuneRequest.storage)
    # Ray's record of the experiment lives at `experiment_uri`; the project's own files in
    # `experiment_dir`, which is that folder itself or, for a URI, a local copy kept in step.
    experiment_uri = storage_uri.join(storage_path, name)
    experiment_dir = Path(experiment_uri)
    if storage_uri.is_uri(storage_path):
        experiment_dir = storage_uri.local_copy(experiment_uri)
        storage_uri.download(experiment_uri, experiment_dir, [REQUEST_FILE, OPTUNA_DB])
    loggers = list(tracking.check(loggers))  # a missing package: one line naming its extra
    if resume:
        request = _load_request(experiment_dir, name, experiment_uri)
        _keep_ranking(request, metric, mode, loggers)
    else:
        if data is None:
            raise ColorizeError("--data is required (a folder of photos or 'sample')")
        base = config or TrainConfig()
        if seed is not None:
            base = TrainConfig.from_dict({"seed": seed}, base)
        request = TuneRequest(
            data=_source(data), name=name, storage=storage_path,
            space=search_space.load_space(space, base), config=base.to_dict(),
            cache_dir=str(cache_dir) if cache_dir else None,
            metric=metric or METRIC_OF_MONITOR.get(base.monitor, DEFAULT_METRIC),
            mode=mode or "max", loggers=loggers, **options,
        )
    request.check()
    tracking.check(request.loggers)  # a resumed search's loggers must still be installed
    base = TrainConfig.from_dict(request.config)
    search_space.validate_space(request.space, base)
    for caution in search_space.cautions(request.space, base):  # not refused: a user may mean it
        log.warning("note: %s", caution)
    if not resume and _same_experiment_exists(experiment_dir, request, experiment_uri):
        log.info("experiment %s exists with the same options: resuming it", experiment_uri)
        request, resume = _load_request(experiment_dir, name, experiment_uri), True
        _keep_ranking(request, None, None, loggers)
    cv_data = prepare_cv_data(request, base)  # decoded once, here on the driver

    import ray

    owned, dashboard_url = connect(address)
    dashboard_url = dashboard_url or ""
    (on_dashboard or (lambda url: log.info("Ray dashboard: %s", url)))(dashboard_url)
    try:
        started = time.time()
        experiment_dir.mkdir(parents=True, exist_ok=True)
        (experiment_dir / REQUEST_FILE).write_text(json.dumps(asdict(request), indent=2))
        _share(experiment_dir, experiment_uri)
        tuner = _make_tuner(request, cv_data, experiment_dir, experiment_uri, verbose, resume)
        with signals.stage(
            f"the tuning experiment {name}",
            f"finished trials and checkpoints are in {experiment_uri}: rerun the same command "
            "to finish it",
        ) as stage:
            stage.on_stop = _stop_tune
            with _tune_signals(), signals.keep_handlers():
                grid = tuner.fit()
            del tuner  # its logger callbacks go while Ray is up (W&B's __del__ asks Ray)
            outcome = write_outputs(request, experiment_dir, experiment_uri)
            _share(experiment_dir, experiment_uri)
            if signals.requested():  # Tune stopped on Ctrl-C/SIGTERM, its state saved
                raise signals.stopped()
        outcome.update(
            experiment_uri=experiment_uri, dashboard_url=dashboard_url, results=grid, seconds=round(time.time() - started, 1)
        )
        return outcome
    finally:
        if owned:
            ray.shutdown()


def _source(data) -> str | list[str]:
    """'sample', or each photo folder as an absolute path (resume may run from elsewhere)."""
    from colorize.data import SAMPLE, data_sources, normalize_source

    return normalize_source([
        s if s == SAMPLE else str(Path(s).expanduser().resolve()) for s in data_sources(data)
    ])


def _share(experiment_dir: Path, experiment_uri: str) -> None:
    """Upload the project's own files beside Ray's where the experiment lives at a URI."""
    if storage_uri.is_uri(experiment_uri):
        names = sorted(p.name for p in experiment_dir.iterdir() if p.is_file())
        storage_uri.upload(experiment_dir, experiment_uri, names)


def _load_request(experiment_dir: Path, name: str, experiment_uri: str) -> TuneRequest:
    from ray.tune import Tuner

    path = experiment_dir / REQUEST_FILE
    if not path.exists() or not Tuner.can_restore(experiment_uri):
        raise ColorizeError(
            f"no experiment {name!r} to resume in {experiment_uri.rsplit('/', 1)[0]} "
            "(check --name and --storage, or start it without --resume)"
        )
    return TuneRequest(**json.loads(path.read_text()))  # older files: the defaults they ran with


def _keep_ranking(request: TuneRequest, metric: str | None, mode: str | None,
                  loggers: list[str]) -> None:
    """--resume finishes the search as it started: Tune restores its metric, mode and logger
    callbacks with it, so other ones given now are refused rather than ignored."""
    for option, given, saved in (("--metric", metric, request.metric), ("--mode", mode, request.mode)):
        if given is not None and given != saved:
            raise ColorizeError(
                f"experiment {request.name!r} ranks its trials with {option} {saved}; --resume "
                f"finishes it so (leave {option} out, or start a new --name)", usage=True)
    if loggers and sorted(loggers) != sorted(request.loggers):
        saved = ", ".join(request.loggers) or "Tune's own logs only"
        raise ColorizeError(
            f"experiment {request.name!r} logs to {saved}; Tune restores its loggers with it "
            "(leave --logger out, or start a new --name)", usage=True)


def _same_experiment_exists(experiment_dir: Path, request: TuneRequest, experiment_uri: str) -> bool:
    """True when the experiment holds a restorable search with the same options (so
    rerunning a stopped command resumes it); a ColorizeError when its options differ."""
    from ray.tune import Tuner

    if not (experiment_dir / REQUEST_FILE).exists() or not Tuner.can_restore(experiment_uri):
        return False
    saved = json.loads((experiment_dir / REQUEST_FILE).read_text())
    if _same_options(saved, asdict(request)):
        return True
    raise ExperimentExists(
        f"experiment {request.name!r} already exists in {experiment_uri.rsplit('/', 1)[0]} with other "
        "options; add --resume to finish it as it was, or choose another --name"
    )


def _same_options(saved: dict, new: dict) -> bool:
    """Whether two requests define the same search. Where the data cache lives changes
    nothing; the default batch sizes may have been shrunk to fit the folds when it started."""
    # As stored; a request saved before a field existed has that field's default.
    saved = json.loads(json.dumps(asdict(TuneRequest(**saved))))
    new = json.loads(json.dumps(new))
    for key in ("cache_dir", "loggers"):  # where data is cached and logged: not the search
        saved.pop(key, None), new.pop(key, None)
    if new["space"].get("batch_size") == search_space.DEFAULT_SPACE["batch_size"]:
        saved["space"] = {k: v for k, v in saved["space"].items() if k != "batch_size"}
        new["space"] = {k: v for k, v in new["space"].items() if k != "batch_size"}
    return saved == new


def _stop_tune() -> bool:
    """Ask a running Tuner.fit to stop as Ctrl-C would: Tune saves the experiment's state and
    returns. Tune listens for this on SIGUSR1 (its SIGINT handler is off under the CLI)."""
    handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    if not callable(handler):
        return False  # Tune's loop is not running yet: stop at once
    handler(signal.SIGUSR1, None)
    return True


@contextlib.contextmanager
def _tune_signals():
    """Under the CLI's stop handler, Tune must not take SIGINT itself (its handler would
    outlive the search and bypass the CLI's messages); _stop_tune asks it instead."""
    if not signals.installed():
        yield
        return
    previous = os.environ.get(TUNE_SIGINT_ENV)
    os.environ[TUNE_SIGINT_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TUNE_SIGINT_ENV, None)
        else:
            os.environ[TUNE_SIGINT_ENV] = previous


def prepare_cv_data(request: TuneRequest, base: TrainConfig) -> CVData:
    """Tiles of the train+validation photos and k folds over them (by photo)."""
    from colorize.data import describe_source, kfold, mix_training_tiles
    from colorize.prepared_data import prepare_data

    prepared = prepare_data(request.data, base, request.cache_dir)
    photoset, split = prepared.photoset, prepared.split
    pool = np.concatenate([split.train, split.val]).tolist()  # the test photos stay unseen
    if request.folds > len(pool):
        raise ColorizeError(
            f"cannot make {request.folds} folds from the {len(pool)} train+validation photos "
            f"of {describe_source(request.data)}; lower --folds or add photos"
        )
    in_pool = photoset.mask_of(pool, all_views=True)
    tiles, owner = photoset.tiles[in_pool], photoset.owner[in_pool]
    scale = photoset.scale[in_pool] if photoset.scale is not None else np.ones(len(tiles), np.uint8)
    folder = prepared.tile_folders()
    folder = folder[in_pool] if folder is not None else None
    folds = tuple(  # folds train on every view of their photos, are scored at the working scale
        (mix_training_tiles(np.flatnonzero(np.isin(owner, train)), scale, base.working_share,
                            folder, base.folder_balance),
         np.flatnonzero(np.isin(owner, held) & (scale == 1)))
        for train, held in kfold(pool, request.folds, base.seed)
    )
    _check_batch_sizes(request, base, min(len(train) for train, _ in folds))
    log.info(
        "data: %d photos, %d train+validation tiles in %d folds (test split of %d photos held back)",
        len(photoset.names), len(tiles), len(folds), len(split.test),
    )
    return CVData(tiles, folds, base.to_dict(), request.max_epochs)


def _check_batch_sizes(request: TuneRequest, base: TrainConfig, fold_tiles: int) -> None:
    """Refuse batch sizes that a fold cannot fill; the default choices shrink to fit instead."""
    default = search_space.DEFAULT_SPACE["batch_size"]
    if request.space.get("batch_size") == default:
        fitting = [size for size in default if size <= fold_tiles]
        if fitting and fitting != default:
            log.warning(
                "a fold trains on %d tiles: searching batch sizes %s only", fold_tiles, fitting
            )
            request.space["batch_size"] = fitting
    if "batch_size" in request.space:
        largest = max(search_space.values_of(request.space, "batch_size"))
    else:
        largest = base.batch_size
    if largest > fold_tiles:
        raise ColorizeError(
            f"batch size {largest} is larger than the training part of a fold ({fold_tiles} "
            "tiles); search smaller batch sizes (--space), use fewer --folds, or add photos"
        )


def _make_tuner(request: TuneRequest, cv_data: CVData, experiment_dir: Path, experiment_uri: str,
                verbose: int, resume: bool):
    from ray import tune

    from colorize.tune.progress import TrialTable

    trainable = tune.with_resources(
        tune.with_parameters(train_cv, data=cv_data),
        {"cpu": request.cpus_per_trial, "gpu": request.gpus_per_trial},
    )
    if resume:
        log.info("resuming %s", experiment_uri)
        return tune.Tuner.restore(
            experiment_uri, trainable, resume_unfinished=True, resume_errored=True
        )
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.RDBStorage(f"sqlite:///{experiment_dir / OPTUNA_DB}")
    searcher = OptunaSearch(storage=storage, study_name=request.name, seed=request.config["seed"])
    if request.scheduler == "asha":
        scheduler = tune.schedulers.ASHAScheduler(
            time_attr="training_iteration", max_t=request.max_epochs,
            grace_period=request.grace_period, reduction_factor=request.reduction_factor,
        )
    else:
        scheduler = tune.schedulers.FIFOScheduler()  # type: ignore[assignment]
    table = TrialTable(list(request.space), request.max_epochs, request.scheduler,
                       metric=request.metric)
    return tune.Tuner(
        trainable,
        param_space=search_space.to_tune(request.space),
        tune_config=tune.TuneConfig(
            metric=column(request.metric), mode=request.mode, search_alg=searcher, scheduler=scheduler,
            num_samples=request.num_samples, max_concurrent_trials=request.max_concurrent or None,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            # our own trial table (tune/progress.py) instead of Tune's 30-second heartbeat
            name=request.name, storage_path=request.storage, verbose=0,
            callbacks=([table] if verbose else [])
            + tracking.tune_callbacks(request.loggers, request.name),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            stop={"training_iteration": request.max_epochs},
        ),
    )


def write_outputs(request: TuneRequest, experiment_dir: Path, experiment_uri: str | None = None) -> dict:
    """trials.csv, best_config.json and the metric's curves (in `experiment_dir`) from Tune's
    record of the experiment (at `experiment_uri`, by default that same folder)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(experiment_uri or str(experiment_dir), default_metric=column(request.metric),
                                  default_mode=request.mode)
    params = list(request.space)
    records = results.collect(
        analysis.trials, analysis.trial_dataframes, params, request.max_epochs, request.scheduler,
        request.metric, request.mode,
    )
    results.write_trials_csv(records, params, experiment_dir / "trials.csv")
    plot = experiment_dir / results.plot_name(request.metric)
    results.plot_curves(records, request.max_epochs, plot, request.metric)
    scored = [r for r in records if r.score() > float("-inf")]
    best = None
    if scored:
        best = results.write_best_config(
            scored[0], request.config, request.data, experiment_dir / "best_config.json"
        )
    unfinished = [r for r in records if r.status == results.UNFINISHED]
    return {
        "experiment_dir": str(experiment_dir),
        "metric": request.metric,
        "mode": request.mode,
        "plot": str(plot),
        "best_config": best,
        "trials": records,
        "summary": results.summary_table(records, params),
        "interrupted": bool(unfinished) or len(records) < request.num_samples,
    }
