"""The one-page HTML report of a training run: `OUT/report.html`, readable from disk.

It ties together what `fit_run.finalize` wrote into the output folder (metrics.json,
plots/, results.png, model/metadata.json) and where the configuration came from (a
ConfigSource: the tuning leaderboard's top rows when it came from `colorize tune`).
Images are embedded as data URIs, so the page stays whole when copied alone.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import logging
from pathlib import Path
from typing import Any

from colorize.presets import ConfigSource

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
CURVES = (("loss", "Loss"), ("ssim", "Validation SSIM"), ("psnr", "Validation PSNR"))

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5em 0 1.5em} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.curves{display:flex;flex-wrap:wrap;gap:.5em} .curves img{width:32%;min-width:300px}
img.wide{max-width:100%} .good{color:#0a7a2f} .bad{color:#b00020} code{background:#f3f3f3;padding:0 .2em}
"""


def write_report(out_dir: str | Path, source: ConfigSource | None = None) -> Path:
    """Write OUT/report.html from the files a finished run left in `out_dir`."""
    out_dir = Path(out_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    metadata_file = out_dir / "model" / "metadata.json"
    metadata = json.loads(metadata_file.read_text()) if metadata_file.exists() else {}
    sections = [
        _header(out_dir, metrics, metadata),
        _test_section(metrics),
        _training_section(metrics, metadata),
        _source_section(source, metadata.get("config", {})),
        _curves_section(out_dir),
        _samples_section(out_dir),
    ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>colorize report: {_e(out_dir.name)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
    path = out_dir / REPORT_FILE
    path.write_text(page)
    log.info("report: %s", path)
    return path


def _e(value: Any) -> str:
    if isinstance(value, list):  # several data folders
        value = ", ".join(map(str, value))
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else _e(value)


def _header(out_dir: Path, metrics: dict, metadata: dict) -> str:
    when = metadata.get("created") or datetime.datetime.now().isoformat(timespec="seconds")
    data = metadata.get("data", {})
    photos = data.get("photos", {})
    counts = " / ".join(str(photos.get(part, "?")) for part in ("train", "val", "test"))
    return (
        f"<h1>Colorization model: {_e(out_dir.name)}</h1>"
        f"<p class='sub'>written {_e(when)} · data <code>{_e(data.get('source', '?'))}</code> "
        f"({counts} photos train / val / test"
        + (f", validation from <code>{_e(data['val_source'])}</code>" if data.get("val_source") else "")
        + (f", test from <code>{_e(data['test_source'])}</code>" if data.get("test_source") else "")
        + ") · model artifact <code>model/</code> "
        "(load with <code>colorize evaluate|predict</code> or the Serve endpoint)</p>"
    )


def _test_section(metrics: dict) -> str:
    test = metrics.get("test", {})
    model, grey, truth = test.get("model", {}), test.get("grey", {}), test.get("truth", {})
    beats = test.get("beats_grey", {})
    verdict = ", ".join(
        f"<span class='{'good' if ok else 'bad'}'>{_e(k.upper())} {'beats' if ok else 'does not beat'} grey</span>"
        for k, ok in beats.items()
    )
    rows = [
        ["model", _fmt(model.get("psnr"), 2), _fmt(model.get("ssim")), _fmt(model.get("colourfulness"), 1)],
        ["grey prediction (L only)", _fmt(grey.get("psnr"), 2), _fmt(grey.get("ssim")), _fmt(grey.get("colourfulness"), 1)],
        ["ground truth", "", "", _fmt(truth.get("colourfulness"), 1)],
    ]
    return (
        f"<h2>Test split (never seen in training), full resolution</h2>"
        f"<p>{_e(test.get('images', 0))} photos. {verdict}</p>"
        + _table(["", "PSNR (dB)", "SSIM", "colourfulness"], rows)
    )


def _training_section(metrics: dict, metadata: dict) -> str:
    val = metrics.get("validation", {})
    rows = [
        ["epochs trained", _e(metrics.get("epochs"))],
        ["training time (s)", _e(metrics.get("train_seconds"))],
        ["validation SSIM / PSNR (centre crops)", f"{_fmt(val.get('ssim'))} / {_fmt(val.get('psnr'), 2)}"],
    ]
    grey = metrics.get("validation_grey")
    if grey:
        rows.append(["grey prediction on the same crops", f"{_fmt(grey.get('ssim'))} / {_fmt(grey.get('psnr'), 2)}"])
    for key, value in metrics.get("distributed", {}).items():
        rows.append([f"Ray Train: {_e(key.replace('_', ' '))}", _fmt(value, 6)])
    tiles = metadata.get("data", {}).get("tiles")
    if tiles:
        rows.append(["tiles train / val / test", " / ".join(str(tiles.get(p, "-")) for p in ("train", "val", "test"))])
    return "<h2>Training</h2>" + _table(["", "value"], rows)


def _source_section(source: ConfigSource | None, config: dict) -> str:
    config = source.config.to_dict() if source else config
    if source is None or source.kind == "defaults":
        origin = "<p>Configuration: defaults with command-line overrides.</p>"
    elif source.kind == "file":
        origin = f"<p>Configuration from the file <code>{_e(source.path)}</code>.</p>"
    elif source.kind == "model":
        origin = (f"<p>Fine-tuned from the model <code>{_e(source.path)}</code>, its "
                  "configuration with command-line overrides.</p>")
    elif source.kind == "preset":
        origin = (f"<p>Configuration: the preset <code>{_e(source.path)}</code> "
                  "(<code>colorize/presets.py</code>) with command-line overrides.</p>")
    else:
        best = source.best
        origin = (
            f"<p>Configuration chosen by tuning in <code>{_e(source.path)}</code>: trial "
            f"<code>{_e(best.get('trial_id', '?'))}</code>, cross-validated SSIM "
            f"{_fmt(best.get('ssim_mean'))} ± {_fmt(best.get('ssim_std'))}, PSNR "
            f"{_fmt(best.get('psnr_mean'), 2)} dB, colourfulness "
            f"{_fmt(best.get('colourfulness_mean'), 1)} after {_e(best.get('epochs', '?'))} epochs "
            f"on <code>{_e(best.get('data', '?'))}</code>.</p>"
        )
        if source.leaderboard:
            header = list(source.leaderboard[0])
            rows = [[_e(row.get(col, "")) for col in header] for row in source.leaderboard]
            origin += "<h3>Tuning leaderboard (top trials)</h3>" + _table(header, rows)
    rows = [[_e(k), _e(v)] for k, v in config.items()]
    return "<h2>Configuration</h2>" + origin + _table(["field", "value"], rows)


def _image(path: Path, alt: str, css: str = "") -> str:
    if not path.exists():
        return f"<p>({_e(path.name)} missing)</p>"
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img class='{css}' alt='{_e(alt)}' src='data:image/png;base64,{encoded}'>"


def _curves_section(out_dir: Path) -> str:
    images = "".join(_image(out_dir / "plots" / f"{name}.png", title) for name, title in CURVES)
    return "<h2>Curves per epoch</h2><div class='curves'>" + images + "</div>"


def _samples_section(out_dir: Path) -> str:
    return (
        "<h2>Sample colorizations (test photos)</h2>"
        "<p>Original, L input, predicted a, predicted b, colorized.</p>"
        + _image(out_dir / "results.png", "results", "wide")
    )
