"""The import graph of `colorize` (with colorize.tune and colorize.serve, the folders tune/
and serve/) has no cycle, counting every import in a file: at the top, inside functions,
under `if TYPE_CHECKING`. An import deferred into a function hides a cycle from Python,
not from the design: the modules still cannot be understood, tested or moved apart."""

import ast

from conftest import ROOT

PACKAGES = {"colorize": ROOT / "colorize", "colorize.tune": ROOT / "tune", "colorize.serve": ROOT / "serve"}


def _modules() -> dict[str, object]:
    """Dotted module name -> its file, for every module of the three packages."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _imported(node, module: str, is_package: bool, known) -> set[str]:
    """The modules of `known` one import statement reaches: `from X import name` reaches
    X.name where that is a module, else X itself (a name X's __init__ defines)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & set(known)
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1 more
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    targets = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return targets & set(known)


def imports_of(source: str, module: str, known, is_package: bool = False) -> set[str]:
    """The `known` modules that `source` (module `module`) imports anywhere in it."""
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            targets |= _imported(node, module, is_package, known)
    return targets - {module}


def import_graph() -> dict[str, set[str]]:
    """Each module -> the modules of the three packages it imports anywhere in its file."""
    modules = _modules()
    return {name: imports_of(path.read_text(), name, modules, path.name == "__init__.py")
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            cycle = visit(target, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_graph_sees_deferred_imports():
    graph = import_graph()
    assert {"colorize.inference", "colorize.tune.service", "colorize.serve.app"} <= set(graph)
    source = ("from colorize import lab\nimport colorize.model\n"
              "def f():\n    from colorize.data import x\n    from . import sibling\n")
    known = {"colorize.lab", "colorize.model", "colorize.data", "colorize.tune.sibling"}
    assert imports_of(source, "colorize.tune.me", known) == known
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_colorizes_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# --- the model library apart from the Ray code -----------------------------------------------

RAY_SIDE = ("colorize.distributed", "colorize.tune", "colorize.serve", "colorize.cli")


def _library_modules(graph) -> list[str]:
    """The modules directly under colorize/ (the model library), its __init__ included."""
    return sorted(name for name in graph if name.count(".") <= 1 and not name.startswith(RAY_SIDE))


def _imports_ray(path) -> bool:
    """Whether a file imports ray or a ray submodule anywhere (deferred imports too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "ray":
            return True
    return False


def test_no_module_directly_under_colorize_imports_ray():
    modules, graph = _modules(), import_graph()
    library = _library_modules(graph)
    assert {"colorize.model", "colorize.training", "colorize.inference"} <= set(library)
    assert "colorize.distributed.train_driver" not in library
    offenders = [name for name in library if _imports_ray(modules[name])]
    assert not offenders, f"these import Ray; their home is colorize/distributed/: {offenders}"
    reaching = {name: sorted(t for t in graph[name] if t.startswith(RAY_SIDE)) for name in library}
    reaching = {name: targets for name, targets in reaching.items() if targets}
    assert not reaching, f"the model library imports the Ray side: {reaching}"


def test_the_ray_check_sees_deferred_ray_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import numpy\ndef f():\n    from ray.util import state\n")
    assert _imports_ray(sample)
    sample.write_text("import numpy\nfrom . import rays\n")
    assert not _imports_ray(sample)


def test_every_subpackage_ships_in_the_wheel():
    """pyproject.toml lists packages by hand (tune/ and serve/ are renamed into colorize):
    a subpackage missing from that list would import here and be absent once installed."""
    import re

    listed = set(re.findall(r'"(colorize[\w.]*)"', (ROOT / "pyproject.toml").read_text()
                            .split("packages = [", 1)[1].split("]", 1)[0]))
    folders = {"colorize." + ".".join(p.parent.relative_to(ROOT / "colorize").parts)
               for p in (ROOT / "colorize").rglob("__init__.py")}
    folders = {name.rstrip(".") for name in folders}
    assert folders - listed == set(), f"add to pyproject.toml's packages: {sorted(folders - listed)}"
