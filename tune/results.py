"""The leaderboard of a search: trials.csv, best_config.json, the metric's plot and a summary.

Everything is read back from Tune's own record of the experiment (its trials and their
per-epoch results), so the files agree with Tune and can be rewritten after a resume.
A trial's figures are those of its last reported epoch, the ones ASHA and Tune rank by;
trials are ranked on the search's metric (`--metric`, tune/trainable.py's METRICS) in its
mode, as ASHA and Optuna rank them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from colorize.tune.trainable import DEFAULT_METRIC, column

COMPLETED, STOPPED, ERROR, UNFINISHED = "completed", "stopped by ASHA", "error", "unfinished"


PLOT_NAMES = {"val_ssim": "ssim.png", "val_psnr": "psnr.png", "colour_score": "colour_score.png",
              "val_calibrated_psnr": "calibrated_psnr.png"}


def plot_name(metric: str) -> str:
    """The file name of the search's curves: ssim.png for val_ssim, as before."""
    return PLOT_NAMES.get(metric, f"{column(metric)}.png")


@dataclass
class TrialRecord:
    trial_id: str
    params: dict  # the searched values
    status: str  # COMPLETED, STOPPED, ERROR or UNFINISHED
    epochs: int
    metrics: dict  # the last reported result (ssim_mean, ssim_std, psnr_mean, ...)
    curve: list[float] = field(default_factory=list)  # the ranked metric per epoch
    metric: str = DEFAULT_METRIC  # what the search ranks on (a name of trainable.METRICS)
    mode: str = "max"

    def value(self) -> float | None:
        """The ranked metric's last value; None when the trial has none (yet)."""
        value = self.metrics.get(column(self.metric))
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def score(self) -> float:
        """The ranked metric, signed so that higher is better; -inf without one."""
        value = self.value()
        if value is None:
            return -math.inf
        return value if self.mode == "max" else -value


def collect(trials, dataframes: dict, params: list[str], max_epochs: int, scheduler: str,
            metric: str = DEFAULT_METRIC, mode: str = "max"):
    """TrialRecords from Tune's Trial objects and per-trial result frames, best first."""
    records = []
    key = column(metric)
    for trial in trials:
        frame = dataframes.get(trial.trial_id)
        curve = [] if frame is None or key not in frame else [float(v) for v in frame[key]]
        last = dict(trial.last_result or {})
        epochs = int(last.get("training_iteration") or 0)
        if trial.status == "ERROR":
            status = ERROR
        elif trial.status != "TERMINATED":
            status = UNFINISHED
        elif epochs >= max_epochs or scheduler != "asha":
            status = COMPLETED
        else:
            status = STOPPED
        records.append(
            TrialRecord(
                trial.trial_id, {p: trial.config.get(p) for p in params}, status, epochs, last, curve,
                metric, mode,
            )
        )
    return sorted(records, key=lambda r: (-r.score(), r.trial_id))


CSV_METRICS = ("ssim_mean", "ssim_std", "psnr_mean", "loss_mean", "colourfulness_mean",
               "colour_score_mean", "calibrated_psnr_mean")


def write_trials_csv(records: list[TrialRecord], params: list[str], path: Path) -> Path:
    columns = ["rank", "trial_id", *params, "epochs", "status", *CSV_METRICS, "fold_ssim"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for rank, record in enumerate(records, 1):
            row = {"rank": rank, "trial_id": record.trial_id, **record.params}
            row.update(epochs=record.epochs, status=record.status)
            row.update({m: _round(record.metrics.get(m)) for m in CSV_METRICS})
            row["fold_ssim"] = " ".join(f"{v:.4f}" for v in record.metrics.get("fold_ssim", []))
            writer.writerow(row)
    return path


def write_best_config(best: TrialRecord, base: dict, source: str, path: Path) -> dict:
    """best_config.json: the full TrainConfig of the best trial and its CV figures."""
    from colorize.config import TrainConfig

    config = TrainConfig.from_dict(best.params, TrainConfig.from_dict(base))
    body = {
        "config": config.to_dict(),
        "metric": best.metric,  # what the search ranked on, and its value for this trial
        "mode": best.mode,
        "score": best.value(),
        "ssim_mean": float(best.metrics["ssim_mean"]),
        "ssim_std": float(best.metrics["ssim_std"]),
        "psnr_mean": float(best.metrics["psnr_mean"]),
        "colourfulness_mean": float(best.metrics.get("colourfulness_mean", math.nan)),
        "colour_score_mean": float(best.metrics.get("colour_score_mean", math.nan)),
        "calibrated_psnr_mean": float(best.metrics.get("calibrated_psnr_mean", math.nan)),
        "trial_id": best.trial_id,
        "epochs": best.epochs,
        "data": source,
    }
    path.write_text(json.dumps(body, indent=2))
    return body


def plot_curves(records: list[TrialRecord], max_epochs: int, path: Path,
                metric: str = DEFAULT_METRIC) -> Path:
    """The ranked metric (CV mean) per epoch for every trial; pruned trials end in an x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for record in sorted(records, key=lambda r: r.trial_id):
        if not record.curve:
            continue
        epochs = range(1, len(record.curve) + 1)
        pruned = record.status != COMPLETED
        line = ax.plot(epochs, record.curve, linestyle="--" if pruned else "-", marker=".", alpha=0.8,
                       label=f"{record.trial_id} ({record.status})")[0]
        ax.plot(len(record.curve), record.curve[-1], "x" if pruned else "o", color=line.get_color())
    ax.set_xlim(0.8, max_epochs + 0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{LABELS.get(metric, metric)} (mean over folds)")
    ax.set_title("trials (dashed, x: stopped before the last epoch)")
    ax.grid(alpha=0.3)
    if 0 < sum(1 for r in records if r.curve) <= 12:  # none yet when stopped early
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


LABELS = {"val_ssim": "validation SSIM", "val_psnr": "validation PSNR (dB)",
          "colour_score": "colour score (PSNR, dB, penalised below the colour floor)",
          "val_calibrated_psnr": "validation PSNR after calibration (dB)"}


def summary_table(records: list[TrialRecord], params: list[str], limit: int = 10) -> str:
    """The leaderboard as text, best first (by the search's metric)."""
    colour = any("colour_score_mean" in r.metrics for r in records)
    header = ["#", "trial", *params, "epochs", "status", "SSIM mean", "± std", "PSNR", "colourful"]
    header += ["colour score"] if colour else []
    rows = [header]
    for rank, r in enumerate(records[:limit], 1):
        rows.append([
            str(rank), r.trial_id, *(_fmt(r.params.get(p)) for p in params), str(r.epochs),
            r.status, _fmt(r.metrics.get("ssim_mean")), _fmt(r.metrics.get("ssim_std")),
            _fmt(r.metrics.get("psnr_mean"), 2), _fmt(r.metrics.get("colourfulness_mean"), 1),
            *([_fmt(r.metrics.get("colour_score_mean"), 2)] if colour else []),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    if len(records) > limit:
        lines.append(f"... {len(records) - limit} more in trials.csv")
    return "\n".join(lines)


def _round(value):
    return round(value, 6) if isinstance(value, float) else value


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return "-" if value is None else str(value)
