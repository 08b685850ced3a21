"""The layer rule of ``lemon_pl`` (issue 23), read from the source of every module.

    core -> data / models / adaptation -> operators / pinn / multilevel / predict -> experiments -> cli

A package may import itself and the packages of LOWER layers only. Two decisions:

* ``data``, ``models`` and ``adaptation`` are one layer of foundations: they may import each other
  (no cycle: the cycle check below covers them like every package), because a network may need the
  data engine's vocabulary and adaptation works on networks;
* the method packages (``operators``, ``pinn``, ``multilevel``, ``predict``) never import each
  other: each method is one wing, and what two of them share moves down into ``core`` or the
  foundations (``predict`` checks the stage it is given by what it does, not by its class).

``lemon_pl/__init__.py`` and ``lemon_pl/__main__.py`` sit above ``cli`` (the console script). Every
import counts: module level, inside functions, relative (``from ..x import y``), and modules
named in ``importlib.import_module("lemon_pl....")`` calls. Also enforced: no import of another
package's private name (``from lemon_pl.data.generate import _x`` from outside ``data``, or a
private module ``lemon_pl.data._x``) and no cycle between packages. A new package must be given
its layer in :data:`LAYERS`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "lemon_pl"
TOP = "lemon_pl"

#: package -> layer (a package may import packages of lower layers; see the module doc)
LAYERS = {"core": 0, "data": 1, "models": 1, "adaptation": 1, "operators": 2, "pinn": 2, "multilevel": 2,
          "predict": 2, "experiments": 3, "cli": 4, "": 5}
#: layers whose packages may import each other (acyclic)
SHARED_LAYERS = {1}

#: edges allowed for now, (importer, imported) -> why: none. An entry needs an issue that removes it.
KNOWN: dict[tuple[str, str], str] = {}


def package_of(module: str) -> str:
    """``lemon_pl.data.generate`` -> ``data``; ``lemon_pl`` / ``lemon_pl.__main__`` -> ``""``."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("__main__", "__init__"):
        return ""
    return parts[1]


def imports(root: Path = ROOT, top: str = TOP) -> list[tuple[str, str, str | None]]:
    """``(importer module, imported module, imported name or None)`` of every import in every module
    under ``root`` (any depth, function-local and relative imports included)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts)
        is_pkg = path.name == "__init__.py"
        if is_pkg:
            module = module[: -len(".__init__")]
        base = module if is_pkg else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                out += [(module, a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    parts = base.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    target = ".".join(parts + ([target] if target else []))
                out += [(module, target, a.name) for a in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                  == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                out.append((module, node.args[0].value, None))
    return [(m, t, n) for m, t, n in out if t == top or t.startswith(top + ".")]


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def violations(found: list[tuple[str, str, str | None]], layers: dict[str, int] = LAYERS
               ) -> tuple[dict[tuple[str, str], list[str]], list[str], list[str]]:
    """``(forbidden package edges -> the modules that make them, private imports, unplaced packages)``."""
    bad: dict[tuple[str, str], list[str]] = {}
    private, unplaced = [], set()
    for module, target, name in found:
        src, dst = package_of(module), package_of(target)
        for p in (src, dst):
            if p not in layers:
                unplaced.add(p)
        if src == dst or src not in layers or dst not in layers:
            continue
        same_ok = layers[src] == layers[dst] and layers[src] in SHARED_LAYERS
        if layers[dst] > layers[src] or (layers[dst] == layers[src] and not same_ok):
            bad.setdefault((src, dst), []).append(module)
        if any(_private(p) for p in target.split(".")[2:]) or (name and _private(name)):
            private.append(f"{module} imports {target}" + (f".{name}" if name else ""))
    return bad, sorted(set(private)), sorted(unplaced)


def package_graph(found, skip: set[tuple[str, str]] = frozenset()) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, target, _ in found:
        src, dst = package_of(module), package_of(target)
        if src != dst and (src, dst) not in skip:
            graph.setdefault(src, set()).add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets (each as its packages, first repeated at the end)."""
    found, done, stack = [], set(), []

    def visit(u: str) -> None:
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if v in stack:
                found.append(stack[stack.index(v):] + [v])
            elif v not in done:
                visit(v)
        stack.pop()
        done.add(u)

    for u in sorted(graph):
        if u not in done:
            visit(u)
    return found


# ----------------------------------------------------------------------------- the rule on lemon_pl

FOUND = imports()


def test_every_package_has_its_layer():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages - set(LAYERS) == set(), "give the new package its layer in LAYERS (and docs/architecture.md)"
    assert violations(FOUND)[2] == []


def test_no_package_imports_a_higher_layer_or_a_sibling_method():
    bad, _, _ = violations(FOUND)
    unexpected = {edge: sorted(set(mods)) for edge, mods in bad.items() if edge not in KNOWN}
    assert unexpected == {}


def test_no_module_outside_cli_imports_the_cli():
    assert sorted({m for m, t, _ in FOUND if package_of(t) == "cli" and package_of(m) not in ("cli", "")}) == []


def test_no_module_imports_another_packages_private_names():
    assert violations(FOUND)[1] == []


def test_no_cycle_between_packages():
    assert cycles(package_graph(FOUND, skip=set(KNOWN))) == []



# ----------------------------------------------------------------------------- the checker itself


def test_the_checker_finds_every_kind_of_violation(tmp_path):
    """A small package tree with one of each violation: every one is found, and nothing else."""
    pkg = tmp_path / "lemon_pl"
    files = {
        "__init__.py": "",
        "__main__.py": "from lemon_pl.cli import main\n",
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from lemon_pl.data import x  # function-local, upward\n",
        "data/__init__.py": "from . import io\n",
        "data/io.py": "from ..models.base import _hidden  # sibling foundation: allowed, private: not\n",
        "models/__init__.py": "",
        "models/base.py": "_hidden = 1\n",
        "pinn/__init__.py": "",
        "pinn/s.py": "import importlib\nimportlib.import_module('lemon_pl.operators.base')\n",
        "operators/__init__.py": "",
        "operators/base.py": "from lemon_pl.core import a\nfrom lemon_pl.data._secret import y\n",
        "multilevel/__init__.py": "",
        "multilevel/plan.py": "import lemon_pl.cli.lightning\n",
        "cli/__init__.py": "from lemon_pl.multilevel import plan\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    found = imports(pkg, "lemon_pl")
    bad, private, unplaced = violations(found)
    assert {e: sorted(m) for e, m in bad.items()} == {
        ("core", "data"): ["lemon_pl.core.a"],
        ("pinn", "operators"): ["lemon_pl.pinn.s"],
        ("multilevel", "cli"): ["lemon_pl.multilevel.plan"]}
    assert private == ["lemon_pl.data.io imports lemon_pl.models.base._hidden",
                       "lemon_pl.operators.base imports lemon_pl.data._secret.y"]
    assert unplaced == []
    assert cycles(package_graph(found)) == [["cli", "multilevel", "cli"]]
    assert cycles(package_graph(found, skip={("multilevel", "cli")})) == []
    assert violations(found, {k: v for k, v in LAYERS.items() if k != "pinn"})[2] == ["pinn"]
