"""`colorize pipeline`: tune, train the best configuration, serve it: one command.

    colorize pipeline                                  # the built-in sample photos
    colorize pipeline --data DIR --out runs/pipeline --num-samples 8 --workers 2

It chains the three services' own entry points on one Ray instance: `colorize.tune.service.
run_tuning` (k-fold search, writes OUT/tune/NAME/best_config.json and trials.csv; NAME is
OUT's folder name), `colorize.distributed.run_training` (the best configuration on Ray Train
workers, a run also named NAME, writes OUT/train/model and the report) and
`colorize.serve.runner.start` (the model behind Ray Serve on 127.0.0.1). Like `colorize tune`,
it searches around the 'pretrained' recipe for 200 photos or more (trials ranked on val_psnr),
else around the seed's small model (ranked on val_ssim); --config and --metric choose
otherwise. The output ends with the endpoint's URL and the report's path; the command then
serves until Ctrl-C or SIGTERM (exit code 130 or 143, the local Ray stopped; see
colorize/signals.py). `run_pipeline()` is the same without the waiting, for tests and scripts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from colorize.distributed.ray_session import connect
from colorize.errors import ColorizeError

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("runs/pipeline")
LEGACY_NAME = "search"  # the experiment name of pipeline runs before they were named after OUT
# The pipeline's own search for a handful of photos (the recipe's data get
# search_space.DEFAULT_SPACE): batch sizes that fit the folds of `sample` (6 photos, 30
# tiles: with 3 folds over its 5 train+validation photos a fold trains on 12 to 20 tiles).
SMALL_DATA_SPACE = {"batch_size": [4, 8], "loss": ["mse", "ssim", "mse+ssim"]}
FINAL_EPOCHS = 20  # the final training's epoch bound unless --epochs says otherwise


def run_pipeline(
    data: str | list[str] = "sample",
    out: str | Path = DEFAULT_OUT,
    *,
    name: str | None = None,
    config=None,
    space: str | Path | dict | None = None,
    folds: int = 3,
    num_samples: int = 4,
    max_epochs: int = 4,
    max_concurrent: int = 0,
    workers: int = 2,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    num_cpus: int | None = None,
    cache_dir: str | Path | None = None,
    metric: str | None = None,
    mode: str | None = None,
    loggers: list[str] | tuple[str, ...] = (),
    verbose: int = 0,  # 1: the live trial table while tuning
    say=lambda line: log.info("%s", line),
) -> dict[str, Any]:
    """Tune, train, serve; returns {"experiment_dir", "best_config", "metrics", "artifact",
    "report", "endpoint", "dashboard_url", "seconds"}. Ray stays up (Serve runs on it).
    `name` (the Tune experiment's and the Ray Train run's) defaults to OUT's folder name;
    `metric`, `mode` and `loggers` are run_tuning's (the loggers run_training's too)."""
    from colorize.config import TrainConfig
    from colorize.distributed.train_driver import run_training
    from colorize.presets import load_experiment
    from colorize.serve.runner import start
    from colorize.tune.service import ExperimentExists, run_tuning

    out = Path(out).expanduser().resolve()
    name = name or experiment_name(out)
    base = config or TrainConfig.from_dict({"epochs": FINAL_EPOCHS})
    # One Ray for the three steps: tune, train and serve each reuse it.
    dashboard = connect(address, num_cpus=num_cpus)[1]
    say(f"Ray dashboard: {dashboard}" if dashboard else "Ray: joined the running instance")
    started = time.time()

    say(f"1/3 tuning: {num_samples} trials, {folds}-fold cross-validation, up to {max_epochs} epochs")
    try:  # a rerun with the same options resumes the search (and the training) where it stopped
        tuned = run_tuning(
            data=data, name=name, storage=out / "tune", folds=folds, num_samples=num_samples,
            max_epochs=max_epochs, max_concurrent=max_concurrent, space=space or SMALL_DATA_SPACE,
            config=base, cache_dir=cache_dir, metric=metric, mode=mode, loggers=loggers,
            verbose=verbose,
        )
    except ExperimentExists:
        raise ColorizeError(f"{out} holds a pipeline run with other options: give another "
                            "--out, or remove that folder to start over") from None
    if not tuned["best_config"]:
        raise ColorizeError(f"no trial finished in {tuned['experiment_dir']}: see trials.csv")
    best = tuned["best_config"]
    say(f"best trial {best['trial_id']}: {tuned['metric']} {best['score']:.4f} (SSIM "
        f"{best['ssim_mean']:.4f} ± {best['ssim_std']:.4f}, PSNR {best['psnr_mean']:.2f} dB)")

    say(f"2/3 training the best configuration on {workers} Ray Train worker(s)")
    source = load_experiment(tuned["experiment_dir"])
    from colorize.distributed.train_driver import RUN_NAME

    legacy = (out / "train" / "ray" / RUN_NAME).is_dir()  # a run of the older fixed name resumes
    metrics = run_training(source, data, out / "train", workers=workers, cache_dir=cache_dir,
                           name=None if legacy else name, loggers=loggers)

    say("3/3 serving the model")
    endpoint = start(metrics["artifact"], host=host, port=port)
    return {
        "experiment_dir": tuned["experiment_dir"], "best_config": best, "metrics": metrics,
        "artifact": metrics["artifact"], "report": metrics["report"], "endpoint": endpoint,
        "dashboard_url": dashboard, "seconds": round(time.time() - started, 1),
    }


def experiment_name(out: Path) -> str:
    """OUT's folder name as a Tune experiment name (letters, digits, '.', '_', '-'); an OUT
    that holds a search of the older fixed name keeps it, so rerunning it resumes."""
    import re

    if (out / "tune" / LEGACY_NAME).is_dir():
        return LEGACY_NAME
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", out.name).strip("-._") or LEGACY_NAME
