"""The benchmark and tool scripts import names from the package inside their functions, so a rename in
the package breaks them only when they run (`make bench`); this checks every such import statically."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("bench/*.py"), *ROOT.glob("tools/*.py")])


def edgemaker_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgemaker":
            for alias in node.names:
                yield node.lineno, node.module, alias.name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_package_name_a_script_imports_exists(script):
    missing = []
    for line, module, name in edgemaker_imports(script):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{script.name}:{line}: {module}.{name}")
    assert not missing, missing


def test_the_scripts_are_found():
    assert any(p.name == "bench.py" for p in SCRIPTS) and any(p.parent.name == "tools" for p in SCRIPTS)
