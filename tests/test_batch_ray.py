"""Batch colorization on Ray Data (colorize.distributed.batch_ray, `colorize predict --address`).

Batches split by image size (fast); on a real local Ray, 20 small photos colorized by 2
model actors are byte-identical to the single-process `colorize predict`; a run interrupted
with Ctrl-C leaves only whole files, and the same command run again finishes the rest
(skipping what was written) with the same bytes. Planning itself is colorize.batch_predict's
(tests/test_batch_predict.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colorize.cli import main
from colorize.distributed import batch_ray
from colorize.images import decode_image
from tests.conftest import write_photos


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_batches_are_split_by_image_size_read_from_the_headers(tmp_path):
    write_photos(tmp_path / "a", 3, size=(48, 48))
    write_photos(tmp_path / "b", 2, size=(40, 56))
    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    pairs = [(str(p), str(tmp_path / "out" / p.name)) for p in sorted(tmp_path.rglob("*.png"))]
    groups = batch_ray.by_size(pairs)
    assert sorted(len(g) for g in groups) == [1, 2, 3]  # 48x48, 56x40, the unreadable one
    assert sorted(pair for group in groups for pair in group) == sorted(pairs)


@pytest.mark.slow
def test_two_actors_give_the_single_process_bytes(ray_local, tiny_artifact, tiny_photos,
                                                  tmp_path, capsys):
    assert main(["predict", str(tiny_artifact), str(tiny_photos), "--out",
                 str(tmp_path / "single")]) == 0
    assert main(["predict", str(tiny_artifact), str(tiny_photos), "--out", str(tmp_path / "ray"),
                 "--address", "local", "--actors", "2", "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert "done 20, skipped 0 already there, failed 0" in captured.out
    single, ray_data = outputs(tmp_path / "single"), outputs(tmp_path / "ray")
    assert len(single) == 20 and single == ray_data

    # run again: everything is there, nothing is redone
    assert main(["predict", str(tiny_artifact), str(tiny_photos), "--out", str(tmp_path / "ray"),
                 "--address", "local"]) == 0
    assert "done 0, skipped 20 already there" in capsys.readouterr().out


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(ray_local, tiny_artifact, tmp_path,
                                                     capsys):
    photos = write_photos(tmp_path / "photos", 20, seed=2, size=(384, 512))  # slow enough
    out = tmp_path / "out"
    command = ["predict", str(tiny_artifact), str(photos), "--out", str(out),
               "--address", "local", "--actors", "2", "--batch-size", "1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.Popen([sys.executable, "-m", "colorize.cli", *command], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        deadline = time.time() + 240
        while not list(out.rglob("*.png")) and time.time() < deadline and run.poll() is None:
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)  # Ctrl-C, as soon as the first results are written
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 130, err[-2000:]
    assert "rerun the same command to do the rest" in err
    before = {name: data for name, data in outputs(out).items() if name.endswith(".png")}
    assert 0 < len(before) < 20  # stopped part-way
    for data in before.values():  # each target whole (a killed write leaves a hidden .partial)
        assert decode_image(data).shape == (384, 512, 3)

    assert main(command) == 0  # the same command again
    printed = capsys.readouterr().out
    assert f"done {20 - len(before)}, skipped {len(before)} already there" in printed
    after = outputs(out)  # the rerun also removed any .partial left by the killed run
    assert len(after) == 20 and all(after[name] == data for name, data in before.items())
    assert main(["predict", str(tiny_artifact), str(photos), "--out", str(tmp_path / "single"),
                 "--batch-size", "1"]) == 0
    assert after == outputs(tmp_path / "single")  # batches of one: the single-process bytes
