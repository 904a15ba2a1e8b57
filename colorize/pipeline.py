"""`colorize pipeline`: tune, train the best configuration, serve it: one command.

    colorize pipeline                                  # the built-in sample photos
    colorize pipeline --data DIR --out runs/pipeline --num-samples 8 --workers 2

It chains the three services' own entry points on one Ray instance: `colorize.tune.service.
run_tuning` (k-fold search, writes OUT/tune/NAME/best_config.json and trials.csv),
`colorize.distributed.run_training` (the best configuration on Ray Train workers, writes
OUT/train/model and the report) and `colorize.serve.runner.start` (the model behind Ray Serve on
127.0.0.1). The output ends with the endpoint's URL and the report's path; the command then
serves until Ctrl-C or SIGTERM (exit code 130 or 143, the local Ray stopped; see
colorize/signals.py). `run_pipeline()` is the same without the waiting, for tests and scripts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from colorize.errors import ColorizeError
from colorize.ray_session import connect

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("runs/pipeline")
# Batch sizes that fit the folds of small photo sets such as `sample` (6 photos, 30 tiles:
# with 3 folds over its 5 train+validation photos a fold trains on 12 to 20 tiles).
DEFAULT_SPACE = {"batch_size": [4, 8], "loss": ["mse", "ssim", "mse+ssim"]}
FINAL_EPOCHS = 20  # the final training's epoch bound unless --epochs says otherwise


def run_pipeline(
    data: str | list[str] = "sample",
    out: str | Path = DEFAULT_OUT,
    *,
    name: str = "search",
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
    verbose: int = 0,  # 1: the live trial table while tuning
    say=lambda line: log.info("%s", line),
) -> dict[str, Any]:
    """Tune, train, serve; returns {"experiment_dir", "best_config", "metrics", "artifact",
    "report", "endpoint", "dashboard_url", "seconds"}. Ray stays up (Serve runs on it)."""
    from colorize.config import TrainConfig
    from colorize.distributed import run_training
    from colorize.experiment import load_experiment
    from colorize.serve.runner import start
    from colorize.tune.service import ExperimentExists, run_tuning

    out = Path(out).expanduser().resolve()
    base = config or TrainConfig.from_dict({"epochs": FINAL_EPOCHS})
    # One Ray for the three steps: tune, train and serve each reuse it.
    dashboard = connect(address, num_cpus=num_cpus)[1]
    say(f"Ray dashboard: {dashboard}" if dashboard else "Ray: joined the running instance")
    started = time.time()

    say(f"1/3 tuning: {num_samples} trials, {folds}-fold cross-validation, up to {max_epochs} epochs")
    try:  # a rerun with the same options resumes the search (and the training) where it stopped
        tuned = run_tuning(
            data=data, name=name, storage=out / "tune", folds=folds, num_samples=num_samples,
            max_epochs=max_epochs, max_concurrent=max_concurrent, space=space or DEFAULT_SPACE,
            config=base, cache_dir=cache_dir, verbose=verbose,
        )
    except ExperimentExists:
        raise ColorizeError(f"{out} holds a pipeline run with other options: give another "
                            "--out, or remove that folder to start over") from None
    if not tuned["best_config"]:
        raise ColorizeError(f"no trial finished in {tuned['experiment_dir']}: see trials.csv")
    best = tuned["best_config"]
    say(f"best trial {best['trial_id']}: SSIM {best['ssim_mean']:.4f} ± {best['ssim_std']:.4f}")

    say(f"2/3 training the best configuration on {workers} Ray Train worker(s)")
    source = load_experiment(tuned["experiment_dir"])
    metrics = run_training(source, data, out / "train", workers=workers, cache_dir=cache_dir)

    say("3/3 serving the model")
    endpoint = start(metrics["artifact"], host=host, port=port)
    return {
        "experiment_dir": tuned["experiment_dir"], "best_config": best, "metrics": metrics,
        "artifact": metrics["artifact"], "report": metrics["report"], "endpoint": endpoint,
        "dashboard_url": dashboard, "seconds": round(time.time() - started, 1),
    }
