"""Installs that cannot drift: constraints.txt pins every package pyproject.toml names, and the
project's own .venv (made by `make install`) holds exactly the pinned versions."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            out[_norm(name)] = version
    return out


def test_every_dependency_of_pyproject_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {_norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in wanted}
    missing = sorted(names - set(pins()) - {"edgemaker"})
    assert not missing, f"constraints.txt lacks {missing}: run `make constraints` after adding a dependency"
    assert pins()["torch"].startswith("2.13.0")


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="not running from this checkout's .venv (made by `make install`)")
def test_the_installed_environment_is_exactly_the_pinned_one():
    installed = {_norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in pins().items() if installed.get(name) != version}
    assert not wrong, f"installed versions differ from constraints.txt (pinned, installed): {wrong}"
