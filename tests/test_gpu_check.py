"""bench/gpu_check.sh, the GPU check prepared for a lent machine, cannot rot on a CPU-only one:
it is valid bash, every `colorize` command in it parses with colorize's own parser (with
`--gpu` for training and a GPU per serving replica), and so do bench/endpoint_rate.py's
arguments; on the local Ray, `--gpu` without a GPU is refused in one line before training."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def commands(program: str) -> list[list[str]]:
    """The arguments of every `PROGRAM ...` command line of the script, with each shell
    variable replaced by a plausible value and redirections and `|| {` tails cut off."""
    found = []
    for line in SCRIPT.read_text().splitlines():
        line = line.strip()
        if line.startswith("#") or not re.search(rf"(^|\s){re.escape(program)}\s", line):
            continue
        line = re.split(r"\s(?:>|\|\||\||&$)", line)[0]
        line = re.sub(r'"?\$\{?FLAGS\}?"?', "--gpus-per-replica 1 --cpus-per-replica 2", line)
        line = re.sub(r"\$\{?(\w+)\}?", "1", line)
        words = shlex.split(line)
        if program in words:  # a word of the command, not of a message
            found.append(words[words.index(program) + 1:])
    return found


def test_script_is_valid_bash():
    bash = shutil.which("bash")
    done = subprocess.run([bash, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_colorize_command_parses_and_the_gpu_is_asked_for():
    from colorize.cli import build_parser

    parser = build_parser()
    parsed = [parser.parse_args(args) for args in commands("colorize")]
    trains = [a for a in parsed if a.command == "train"]
    serves = [a for a in parsed if a.command == "serve"]
    assert len(trains) == 2 and [t.gpu for t in trains] == [True, False]
    assert all(t.workers == 1 and str(t.data) in ("sample", "['sample']") for t in trains)
    assert len(serves) == 1 and serves[0].gpus_per_replica == 1
    flags = re.findall(r'^FLAGS="([^"]+)"', SCRIPT.read_text(), re.M)
    assert any("--gpus-per-replica 1" in f for f in flags) and any("--gpus-per-replica 0" in f for f in flags)


def test_endpoint_rate_arguments_parse():
    import importlib.util

    spec = importlib.util.spec_from_file_location("endpoint_rate", ROOT / "bench" / "endpoint_rate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (args,) = commands("bench/endpoint_rate.py")
    parsed = module.build_parser().parse_args(args)
    assert parsed.url.startswith("http://127.0.0.1:") and parsed.json


@pytest.mark.slow
def test_gpu_training_on_a_ray_without_gpus_is_one_line(ray_local):
    from colorize.distributed.train_driver import check_resources
    from colorize.errors import ColorizeError

    with pytest.raises(ColorizeError, match=r"need 1 GPU\(s\) but the Ray cluster has 0"):
        check_resources(1, True, 1, False)
    check_resources(1, False, 1, False)  # the same worker on the CPU fits
