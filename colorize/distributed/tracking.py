"""Experiment tracking for `colorize tune` and `colorize train` (`--logger`, repeatable).

    tensorboard  TensorBoard event files   tune: each trial's folder (Ray's TBXLoggerCallback)
                                           train: OUT/tensorboard (Keras's TensorBoard, rank 0)
    csv          one row per epoch         tune: each trial's progress.csv (CSVLoggerCallback)
                                           train: OUT/epochs.csv (Keras's CSVLogger, rank 0)
    mlflow       MLflow                    tune: a run per trial (MLflowLoggerCallback)
                                           train: one run (ray.air.integrations.mlflow.setup_mlflow)
    wandb        Weights & Biases          tune: a run per trial (WandbLoggerCallback)
                                           train: one run (ray.air.integrations.wandb.setup_wandb)

TensorBoard and CSV logs are always written: Ray Tune writes them for every trial (its own
analysis reads the CSV and JSON), and `train` writes them as `fit` does; naming them is
allowed and changes nothing. MLflow and W&B are optional extras: asked for without their
package installed, the command stops before any work, in one line naming the extra.

Both read their usual environment: MLflow `MLFLOW_TRACKING_URI` (default: MLflow's own
local default, a SQLite store `./mlflow.db`, made absolute so that workers write where the
command was started; MLflow 3 refuses a `file://` folder store unless
`MLFLOW_ALLOW_FILE_STORE=true`, which is passed on to the workers like the others) and
`MLFLOW_EXPERIMENT_NAME` (default: the search's --name, or the training run's name); W&B
`WANDB_PROJECT` (default `colorize`), `WANDB_API_KEY` or `wandb login`, and `WANDB_MODE`
(`offline` writes runs locally for `wandb sync` later). Runs are named after the search's
--name (a run per trial) or the training run's name (--name, default the --out folder's).
`train` logs from its rank-0 worker, so these variables are passed on to the workers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from colorize.errors import ColorizeError

LOGGERS = ("tensorboard", "csv", "mlflow", "wandb")
ALWAYS = ("tensorboard", "csv")  # written whatever --logger says
# logger -> (the module it needs, the extra that installs it)
EXTRAS = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
DEFAULT_MLFLOW_STORE = "mlflow.db"  # MLflow's own local default (SQLite), made absolute
DEFAULT_WANDB_PROJECT = "colorize"
# Environment variables the trackers read, passed on to Ray Train's workers.
ENV_PREFIXES = ("MLFLOW_", "WANDB_")


def check(loggers: Iterable[str] | None) -> tuple[str, ...]:
    """The loggers asked for, each once and in order; a ColorizeError naming the first
    unknown one (a usage error) or the pip extra of one whose package is missing."""
    names = tuple(dict.fromkeys(loggers or ()))
    unknown = [name for name in names if name not in LOGGERS]
    if unknown:
        raise ColorizeError(f"unknown --logger {unknown[0]!r} (choose from {{{','.join(LOGGERS)}}})",
                            usage=True)
    for name in names:
        if name in EXTRAS and importlib.util.find_spec(EXTRAS[name][0]) is None:
            module, extra = EXTRAS[name]
            raise ColorizeError(f"--logger {name} needs the {module} package: "
                                f'pip install "colorize[{extra}]"')
    return names


def extra_trackers(loggers: Iterable[str]) -> list[str]:
    """The loggers beyond the ones always written (mlflow, wandb)."""
    return [name for name in loggers if name not in ALWAYS]


def mlflow_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else MLflow's local default SQLite store, made absolute here."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(DEFAULT_MLFLOW_STORE).resolve()}"


def mlflow_experiment(default: str) -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or default


def wandb_project() -> str:
    return os.environ.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT


def tune_callbacks(loggers: Iterable[str], experiment: str) -> list:
    """Ray Tune's own logger callbacks for `loggers` (Tune adds its CSV, JSON and TensorBoard
    ones to whatever is given, so those are passed only when named)."""
    callbacks: list[Any] = []
    for name in check(loggers):
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            callbacks.append(TBXLoggerCallback())
        elif name == "csv":
            from ray.tune.logger import CSVLoggerCallback

            callbacks.append(CSVLoggerCallback())
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            callbacks.append(MLflowLoggerCallback(
                tracking_uri=mlflow_tracking_uri(), experiment_name=mlflow_experiment(experiment),
                tags={"colorize.command": "tune", "colorize.experiment": experiment},
            ))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            callbacks.append(WandbLoggerCallback(project=wandb_project(), group=experiment))
    return callbacks


def worker_env() -> dict[str, str]:
    """The trackers' environment variables set here, for Ray Train's workers."""
    return {key: value for key, value in os.environ.items() if key.startswith(ENV_PREFIXES)}


def train_settings(loggers: Iterable[str], run_name: str, out_dir: Path) -> dict:
    """What rank 0 of a Ray Train run needs to log (plain data: it travels in the loop config)."""
    names = check(loggers)
    settings: dict[str, Any] = {
        "loggers": list(dict.fromkeys((*ALWAYS, *names))), "run_name": run_name,
        "tensorboard_dir": str(out_dir / "tensorboard"), "csv_path": str(out_dir / "epochs.csv"),
    }
    if "mlflow" in names:
        settings["mlflow"] = {"tracking_uri": mlflow_tracking_uri(),
                              "experiment_name": mlflow_experiment(run_name)}
    if "wandb" in names:  # the same W&B run id when a rerun or a restarted worker group resumes
        digest = hashlib.sha1(str(out_dir).encode()).hexdigest()[:8]
        settings["wandb"] = {"project": wandb_project(), "dir": str(out_dir),
                             "id": f"{re.sub(r'[^A-Za-z0-9_.-]', '-', run_name)}-{digest}"}
    return settings
