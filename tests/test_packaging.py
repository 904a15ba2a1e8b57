"""Installed names cannot collide: the folders tune/ and serve/ are the packages
colorize.tune and colorize.serve, both installed (pyproject.toml's package-dir) and in a
source tree that is not installed (what `colorize submit` ships to a cluster)."""

import shutil
import subprocess
import sys

import tomllib
from conftest import ROOT


def test_pyproject_maps_the_folders_into_colorize():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"colorize.tune": "tune", "colorize.serve": "serve"}
    assert {"colorize", "colorize.cli", "colorize.tune", "colorize.serve"} <= set(setuptools["packages"])
    assert not any(p.split(".")[0] in ("tune", "serve") for p in setuptools["packages"])


def test_a_shipped_source_tree_imports_them_as_colorize_subpackages(tmp_path):
    for name in ("colorize", "tune", "serve", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    # -S: no site-packages, so no installed (or editable) colorize can answer instead.
    code = ("import sys, colorize.tune, colorize.serve; "
            "print(colorize.tune.__file__, colorize.serve.__file__, 'tune' in sys.modules)")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=True)
    tune_file, serve_file, top_level = result.stdout.split()
    assert tune_file == str(tmp_path / "tune" / "__init__.py")
    assert serve_file == str(tmp_path / "serve" / "__init__.py")
    assert top_level == "False"
