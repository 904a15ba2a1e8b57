"""colorize/cli/: one front door. Every subcommand module is imported by name from the
package (no import_module), only the command line imports the command line (no cycle), and
the command starts without TensorFlow or Ray."""

import argparse
import ast
import subprocess
import sys

from conftest import ROOT

import colorize.cli
from colorize.cli import options

CLI_DIR = ROOT / "colorize" / "cli"


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_every_subcommand_module_registers_through_a_plain_import():
    modules = {p.stem for p in CLI_DIR.glob("*.py")} - {"__init__", "__main__", "options"}
    assert {m.__name__.rsplit(".", 1)[1] for m in colorize.cli.SUBCOMMANDS} == modules
    assert "import_module" not in (CLI_DIR / "__init__.py").read_text()
    parser = colorize.cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"fit", "evaluate", "predict", "train", "serve", "tune", "submit", "jobs",
            "pipeline", "cluster"} <= set(commands)


def test_nothing_outside_the_command_line_imports_it():
    for package in ("colorize", "tune", "serve"):
        for path in (ROOT / package).rglob("*.py"):
            if CLI_DIR in path.parents:
                continue
            wrong = {n for n in _imports(path) if n == "colorize.cli" or n.startswith("colorize.cli.")}
            assert not wrong, f"{path.relative_to(ROOT)} imports the command line: {wrong}"
    assert not any(n.startswith("colorize.cli") for n in _imports(CLI_DIR / "options.py"))


def test_the_command_starts_without_tensorflow_or_ray():
    code = ("import sys, colorize.cli; colorize.cli.build_parser(); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_training_flags_and_their_config_agree():
    parser = colorize.cli.build_parser()
    args = parser.parse_args(["train", "--data", "sample", "--ssim-weight", "0.3", "--batch-norm", "no"])
    config = options.config_from_args(args)
    assert config.ssim_weight == 0.3 and config.batch_norm is False


def test_every_subcommands_help_prints_its_flags_as_written():
    """Help lines come from the config classes' comments; a '%' in one (argparse formats
    help text) must print as written, not as a dump of the action."""
    parser = colorize.cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        text = sub.format_help()
        assert "option_strings" not in text, name
    assert "(~20 % at views 2)" in " ".join(commands["fit"].format_help().split())


def test_a_rebalanced_run_selected_on_raw_psnr_is_cautioned_once_and_still_runs(capsys):
    """--rebalance under --monitor psnr is valid but keeps an early, grey epoch (the
    rebalanced head's raw PSNR does not rise as its colour grows): said on stderr, not refused."""
    parser = colorize.cli.build_parser()
    args = parser.parse_args(["fit", "--data", "sample", "--out", "runs/x", "--rebalance", "0.5", "--monitor", "psnr"])
    config = options.config_from_args(args)
    assert config.rebalance == 0.5 and config.monitor == "psnr"
    err = capsys.readouterr().err
    assert err.count("colorize: note:") == 1 and "monitor calibrated" in err
    options.config_from_args(parser.parse_args(["fit", "--data", "sample", "--out", "runs/x", "--rebalance", "0.5",
                                                "--monitor", "calibrated"]))
    options.config_from_args(parser.parse_args(["fit", "--data", "sample", "--out", "runs/x", "--monitor", "psnr"]))
    assert capsys.readouterr().err == ""
