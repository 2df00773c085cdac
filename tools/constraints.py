"""Write constraints.txt: the exact version of every package `make install` installs.

    python tools/constraints.py            # pin what the running environment has (the versions
                                           # the suite just passed with); `make constraints`
    python tools/constraints.py --upgrade  # the newest versions pyproject.toml allows; `make upgrade`

uv resolves pyproject.toml's dependencies and extras (not base-model: onnx2torch is installed
without its dependencies, like aisfx, and both are pinned below as they are), with torch kept at
the CPU build pyproject names. pip's configured wheel folders and indexes are passed on, since uv
does not read pip's configuration.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("dev", "more-backbones", "tflite", "web", "ray")
NO_DEPS = ("aisfx", "onnx2torch")  # `pip install --no-deps` in the Makefile; their pins come from here
TORCH = "torch==2.13.0"


def _pip_sources() -> list[str]:
    """--find-links / --extra-index-url from pip's own configuration, for uv."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    args = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        flag = {"find-links": "--find-links", "extra-index-url": "--extra-index-url", "index-url": "--index-url"}.get(
            key.rsplit(".", 1)[-1])
        if flag:
            args += [x for v in value.strip("'\"").split() for x in (flag, v)]
    return args


def _installed() -> dict[str, str]:
    return {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions, not the installed ones")
    parser.add_argument("-o", "--output", default=str(ROOT / "constraints.txt"))
    args = parser.parse_args()
    installed = _installed()
    with tempfile.TemporaryDirectory() as tmp:
        prefer = Path(tmp) / "prefer.txt"
        pins = [TORCH] if args.upgrade else [f"{n}=={v}" for n, v in installed.items() if n != "edgemaker"]
        prefer.write_text("\n".join(pins) + "\n")
        compiled = Path(tmp) / "compiled.txt"
        cmd = ["uv", "pip", "compile", str(ROOT / "pyproject.toml"), *(x for e in EXTRAS for x in ("--extra", e)),
               "--python", sys.executable, "-c", str(prefer), "--no-header", "--no-annotate",
               "--index-strategy", "unsafe-best-match", "--quiet", *_pip_sources(), "-o", str(compiled)]
        subprocess.run(cmd, check=True, cwd=ROOT)
        lines = [ln for ln in compiled.read_text().splitlines() if ln and not ln.startswith("#")]
    for name in NO_DEPS:
        version = installed.get(name)
        if version is None:
            raise SystemExit(f"{name} is not installed: run `make install` first")
        lines.append(f"{name}=={version}")
    header = ("# Exact versions the test suite passed with; `make install` and CI install through them.\n"
              "# Regenerate: `make upgrade` (newest allowed, then the suite) or `make constraints` (this environment).\n")
    Path(args.output).write_text(header + "\n".join(sorted(lines, key=str.lower)) + "\n")
    print(f"{args.output}: {len(lines)} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
