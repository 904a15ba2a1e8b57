"""colorize/signals.py: the first Ctrl-C or SIGTERM stops a command cleanly.

In-process: the handler, stages, graceful stops and the restoring of handlers that Ray
replaces. In real processes: `colorize pipeline` stopped while it serves (exit 130 within
30 s, no Ray process of its session left), `colorize fit` stopped mid-training (130 / 143,
and the same command resumes), `colorize tune` stopped mid-search and resumed by the same
command, `colorize predict` stopped mid-run (no partial file; the rerun finishes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from colorize import signals
from tests.conftest import own_lines, write_photos


def tracebacks(lines):
    """Traceback lines of this project's processes (tests.conftest.own_lines)."""
    return [line for line in own_lines(lines) if "Traceback" in line]


# --- in process ---------------------------------------------------------------------------


def test_a_signal_stops_the_current_stage_with_its_message():
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    with signals.handling():
        with pytest.raises(signals.Stopped) as caught:
            with signals.stage("training into out", "saved in out/checkpoint"):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here, in the main thread
        assert caught.value.exit_code == 143 and caught.value.what == "training into out"
        assert caught.value.after == "saved in out/checkpoint"
    assert signal.getsignal(signal.SIGINT) is before  # put back after
    assert not signals.installed() and signals.requested() is None


def test_a_graceful_stop_is_asked_first_and_a_second_signal_stops_at_once():
    asked = []
    with signals.handling(), signals.stage("tuning") as stage:
        stage.on_stop = lambda: asked.append(True) or True
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the graceful stop returns: the command carries on
        assert asked == [True] and signals.requested() == signal.SIGINT
        with pytest.raises(signals.Stopped) as caught:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert caught.value.exit_code == 130 and asked == [True]


def test_a_graceful_stop_that_hangs_is_cut_short(monkeypatch):
    monkeypatch.setattr(signals, "GRACE_S", 0.5)
    with signals.handling(), signals.stage("training") as stage:
        stage.on_stop = lambda: True  # asks, but nothing ever ends
        os.kill(os.getpid(), signal.SIGTERM)
        started = time.monotonic()
        with pytest.raises(signals.Stopped) as caught:
            time.sleep(10)
        assert time.monotonic() - started < 5 and caught.value.exit_code == 143


def test_a_plain_keyboard_interrupt_inside_a_stage_keeps_the_signal():
    # Ray's blocking calls re-raise a handler's exception as a bare KeyboardInterrupt.
    with signals.handling():
        with pytest.raises(signals.Stopped) as caught, signals.stage("waiting", "nothing lost"):
            os.kill(os.getpid(), signal.SIGTERM)
            try:
                time.sleep(5)
            except signals.Stopped:
                raise KeyboardInterrupt from None
        assert caught.value.exit_code == 143 and caught.value.after == "nothing lost"


def test_handlers_a_library_installs_are_put_back():
    with signals.handling():
        with signals.keep_handlers():
            signal.signal(signal.SIGINT, lambda *_: None)  # as Ray Train does in fit()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as ray.init does
        assert signals.installed()
        assert signal.getsignal(signal.SIGTERM) is signal.getsignal(signal.SIGINT)


# --- real processes -----------------------------------------------------------------------

TINY = ["--image-size", "32", "--depth", "2", "--base-filters", "8", "--batch-size", "4"]


class Command:
    """A `colorize` subprocess whose output is collected line by line as it comes."""

    def __init__(self, *args, cwd=None):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "colorize.cli", *map(str, args)], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                        for s, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while not condition():
            assert self.process.poll() is None, f"ended before {what}:\n" + "\n".join(self.err[-30:])
            assert time.time() < deadline, f"no {what} after {timeout} s:\n" + "\n".join(self.err[-30:])
            time.sleep(0.3)

    def stop(self, signum: int, within: float = 30.0) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        for reader in self.readers:
            reader.join(5)
        return code, time.monotonic() - started

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


def ray_session_of(processes: list[psutil.Process]) -> str:
    for process in processes:
        try:
            found = re.search(r"session_\d{4}-\d\d-\d\d_[\d-]+_\d+_\d+", " ".join(process.cmdline()))
        except psutil.Error:
            continue
        if found:
            return found.group(0)
    return ""


def alive(processes: list[psutil.Process], session: str) -> list[str]:
    """Those of `processes`, and any process naming the Ray `session`, still running."""
    left = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(process.info["cmdline"] or [])
        mine = any(process.pid == p.pid and process.create_time() == p.create_time() for p in processes)
        if mine or (session and session in cmdline):
            left.append(f"{process.pid} {cmdline[:120]}")
    return left


@pytest.mark.slow
def test_sigint_stops_the_serving_pipeline_and_its_ray(tiny_photos, cache_dir, tmp_path):
    from tests.test_pipeline import free_port

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"batch_size": [4], "loss": ["mse"]}))
    run = Command("pipeline", "--data", tiny_photos, "--out", tmp_path / "p", "--space", space,
                  "--folds", "2", "--num-samples", "1", "--max-epochs", "1", "--workers", "1",
                  "--port", free_port(), "--cache", cache_dir, "--num-cpus", "2", "--epochs", "1",
                  *TINY)
    run.wait_for(lambda: any(line.startswith("endpoint: ") for line in run.out), 540, "endpoint")
    ray_processes = run.descendants()
    session = ray_session_of(ray_processes)
    assert ray_processes and session, "the pipeline should run its own local Ray"
    code, seconds = run.stop(signal.SIGINT)
    assert code == 130 and seconds < 30, (code, seconds, run.err[-10:])
    assert any("colorize: stopped serving http://127.0.0.1:" in line for line in run.err)
    assert not tracebacks(run.err + run.out), "\n".join(run.err)
    time.sleep(2)  # processes killed a moment ago may still be on their way out
    assert alive(ray_processes, session) == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_fit_stops_mid_training_and_the_same_command_resumes(signum, tiny_photos, cache_dir, tmp_path):
    out = tmp_path / "fit"
    args = ["fit", "--data", tiny_photos, "--out", out, "--cache", cache_dir, "--quiet", *TINY]
    run = Command(*args, "--epochs", 100)
    run.wait_for(lambda: (out / "checkpoint" / "state.json").exists(), 300, "first checkpoint")
    code, seconds = run.stop(signum)
    assert code == 128 + signum and seconds < 30, (code, seconds, run.err[-10:])
    stopped = [line for line in run.err if line.startswith("colorize: stopped")]
    assert stopped == [f"colorize: stopped training into {out} on {signal.Signals(signum).name}; "
                       f"the finished epochs are saved in {out / 'checkpoint'}: rerun the same "
                       "command to resume"]
    assert not any("Traceback" in line for line in run.err)
    done = json.loads((out / "checkpoint" / "state.json").read_text())["epoch"]
    assert 1 <= done < 100

    again = Command(*[a for a in args if a != "--quiet"], "--epochs", done + 1)
    assert again.process.wait(timeout=300) == 0, "\n".join(again.err[-20:])
    again.readers[1].join(5)
    assert any(f"resuming from {out / 'checkpoint'} at epoch {done}" in line for line in again.err)
    assert any(f"epoch {done + 1}/{done + 1}: loss " in line for line in again.err)  # progress
    assert json.loads((out / "metrics.json").read_text())["epochs"] == done + 1


@pytest.mark.slow
def test_tune_stops_mid_search_and_the_same_command_finishes_it(cache_dir, tmp_path):
    photos = write_photos(tmp_path / "photos", 12, size=(32, 32))
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"batch_size": [2], "loss": ["mse", "ssim"]}))
    args = ["tune", "--data", photos, "--name", "s", "--storage", tmp_path / "tune", "--folds", "2",
            "--num-samples", "2", "--max-epochs", "2", "--max-concurrent", "1", "--space", space,
            "--no-early-stopping", "--cache", cache_dir, "--image-size", "16", "--depth", "2",
            "--base-filters", "4"]
    folder = tmp_path / "tune" / "s"
    run = Command(*args)
    # A first epoch's checkpoint: trials write these straight to storage (result.json only
    # reaches it when Tune next syncs, which may be the end of the search).
    run.wait_for(lambda: any(folder.glob("*/checkpoint_*")), 420, "a first checkpoint")
    code, seconds = run.stop(signal.SIGTERM)
    assert code == 143 and seconds < 30, (code, seconds, run.err[-10:])
    header = ["trial", "batch_size", "loss", "epoch", "ssim_mean", "status"]
    assert header in [line.split() for line in run.out]  # the live trial table
    assert not [line for line in run.err if "Traceback" in line or line.startswith("*** ")]
    assert any(line.startswith("colorize: stopped the tuning experiment s on SIGTERM; finished "
                               f"trials and checkpoints are in {folder}") for line in run.err)

    again = Command(*args)
    assert again.process.wait(timeout=420) == 0, "\n".join(again.err[-20:])
    again.readers[1].join(5)
    assert any("exists with the same options: resuming it" in line for line in again.err)
    rows = (folder / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",completed," in row for row in rows[1:]), rows


@pytest.mark.slow
def test_predict_stopped_leaves_no_partial_file_and_the_rerun_finishes(tiny_artifact, tmp_path):
    photos = write_photos(tmp_path / "in", 150, size=(96, 128))
    out = tmp_path / "out"
    run = Command("predict", tiny_artifact, photos, "--out", out, "--batch-size", 1)
    run.wait_for(lambda: out.is_dir() and any(out.glob("*.png")), 300, "a first output")
    code, _ = run.stop(signal.SIGINT)
    assert code == 130, run.err[-10:]
    assert any(line.startswith(f"colorize: stopped colorizing into {out} on SIGINT") for line in run.err)
    assert not list(out.glob(".*")), "a temporary file was left behind"
    finished = len(list(out.glob("*.png")))
    assert 0 < finished < 150

    again = Command("predict", tiny_artifact, photos, "--out", out)
    assert again.process.wait(timeout=300) == 0, "\n".join(again.err[-20:])
    again.readers[0].join(5)
    assert again.out[-1] == f"done {150 - finished}, skipped {finished} already there " \
                            f"(--overwrite redoes them), failed 0; outputs in {out}"
    assert len(list(out.glob("*.png"))) == 150
