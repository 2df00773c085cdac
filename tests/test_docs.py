"""The documentation cannot rot silently: the site builds with --strict, every `edgemaker` command it
shows names a real subcommand and real options, the Python API example runs, and the benchmarks page
generator writes what the JSON holds."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
sys.path.insert(0, str(ROOT / "tools"))


def test_site_builds_with_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[dev]')")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    for page in ("index", "python-api", "benchmarks", "changelog"):
        assert (tmp_path / "site" / f"{page}.html").is_file()
    assert "make demo" in (tmp_path / "site" / "changelog.html").read_text("utf-8")  # CHANGELOG.md included


# -- command lines --------------------------------------------------------------------------------

def command_lines(text: str) -> list[str]:
    """`edgemaker ...` lines inside fenced code blocks (shell prompts, .venv/bin/ and comments dropped)."""
    lines, fenced = [], False
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        line = re.sub(r"^\s*(\$\s*)?(\.venv/bin/)?", "", raw)
        if fenced and line.startswith("edgemaker "):
            lines.append(line)
    return lines


def check_command(line: str) -> str | None:
    """None when `line` uses an existing subcommand and only options that subcommand has; else why not."""
    from edgemaker.cli import cli

    words = shlex.split(line, comments=True)
    words = [w for w in words if w != "&"][1:]  # the program name and a trailing background '&'
    command: click.Command = cli
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        name = words.pop(0)
        if name not in command.commands:
            return f"no subcommand {name!r} in {line!r}"
        command = command.commands[name]
    if isinstance(command, click.Group):
        return f"{line!r} names no subcommand"
    known = {opt for p in command.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    known |= {"-h", "--help"}
    for word in words:
        if word.startswith("-") and word != "-" and not re.fullmatch(r"-\d.*", word):
            option = word.split("=", 1)[0]
            if option not in known:
                return f"`edgemaker {command.name}` has no option {option} ({line!r})"
    return None


def test_every_command_shown_in_the_docs_is_real():
    checked, problems = 0, []
    for page in PAGES:
        for line in command_lines(page.read_text("utf-8")):
            checked += 1
            why = check_command(line)
            if why:
                problems.append(f"{page.relative_to(ROOT)}: {why}")
    assert checked >= 40, f"only {checked} command lines found: is the parser still reading the code blocks?"
    assert not problems, "\n".join(problems)


NOT_EDGEMAKER_OPTIONS = {"--no-deps": "pip", "--strict": "mkdocs", "--limit": "bench/int8_routes.py",
                         "--methods": "bench/quality.py", "--sets": "bench/quality.py",
                         "--data-root": "bench/quality.py"}


def test_every_option_named_in_the_prose_exists():
    """`--flag` in running text too (not only in command lines) is an option of some subcommand."""
    from edgemaker.cli import cli

    options, stack = set(), [cli]
    while stack:
        command = stack.pop()
        stack += list(getattr(command, "commands", {}).values())
        options |= {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    unknown = [f"{page.relative_to(ROOT)}: {flag}" for page in PAGES
               for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", page.read_text("utf-8"))))
               if flag not in options and flag not in NOT_EDGEMAKER_OPTIONS]
    assert not unknown, "options no subcommand has: " + ", ".join(unknown)


def test_the_command_check_catches_a_wrong_subcommand_or_option():
    assert check_command("edgemaker train photos/ --out runs/x --formats onnx-int8") is None
    assert check_command("edgemaker data split photos/ --out s/ --val 0.1") is None
    assert "no subcommand 'trian'" in check_command("edgemaker trian photos/")
    assert "no option --epoch" in check_command("edgemaker train photos/ --epoch 3")
    assert "no subcommand 'splitt'" in check_command("edgemaker data splitt photos/")
    assert "names no subcommand" in check_command("edgemaker data --json")


# -- the Python API page's example ----------------------------------------------------------------

@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path):
    """The page's complete example, run as written from a folder holding the repository's examples/."""
    page = (ROOT / "docs" / "python-api.md").read_text("utf-8")
    code = re.search(r"<!-- example:python-api -->\n```python\n(.*?)```\n", page, re.S).group(1)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "api-run" / "model_int8.onnx").is_file() and (tmp_path / "api-run" / "model_fp32.onnx").is_file()
    float_acc = float(re.search(r"float model: test accuracy ([\d.]+)", out.stdout).group(1))
    right, total = map(int, re.search(r"model_int8.onnx: (\d+) of (\d+) test photos right", out.stdout).groups())
    assert total == 12  # 10% of 3 classes x 40 photos
    assert float_acc > 1 / 3 and right / total > 1 / 3  # far above chance on three classes


# -- the benchmarks page ----------------------------------------------------------------------------

def test_benchmarks_page_writes_the_json_between_its_markers(tmp_path):
    import benchmarks_page as bp

    measured = {"date": "2026-12-07T04:00:00+00:00", "commit": "abc1234", "cpu": "Some CPU", "cores": 2,
                "ram_gib": 23.5, "os": "Linux 6", "python": "3.11.7"}
    results = {"measured": measured, "data": "/x/caltech-dev10", "extract_ratio": 0.912, "int8_size_ratio": 0.27,
               "goals_met": {"extract_ratio": True, "int8_size_ratio": True},
               "audio": {"aisfx": {"clips_s": 15.8, "windows_s": 41.1, "raw_windows_s": 42.0,
                                   "windowing_overhead": 0.021}}}
    probe = {"measured": measured, "sets": [{"data": "/x/esc10-dev9", "backbone": "aisfx",
                                              "rows": {"default": {"val": 0.972, "test": 0.931, "seconds": 7.5}}}]}
    page = "# Benchmarks\n\nintro kept\n\n<!-- bench:start -->\nold numbers\n<!-- bench:end -->\n\n## Earlier\nkept too\n"
    out = bp.render(page, results, probe)
    assert "old numbers" not in out and "intro kept" in out and "## Earlier\nkept too" in out
    assert out.count(bp.START) == 1 and out.count(bp.END) == 1
    for text in (measured["date"], measured["commit"], measured["cpu"], "2 cores", "23.5 GiB RAM",
                 f"{results['extract_ratio']:.3f}", f"{results['int8_size_ratio']:.3f}", "caltech-dev10",
                 "| `aisfx` | 15.8 | 41.1 | 42.0 | 2.1% |", "| esc10-dev9 (aisfx) | default | 0.972 | 0.931 | 7.50 |"):
        assert text in out, text
    assert bp.render(out, results, probe) == out  # a second run changes nothing
    assert "not recorded" in bp.render(page, {k: v for k, v in results.items() if k != "measured"}, None)
    with pytest.raises(SystemExit, match="bench:start"):
        bp.render("# no markers\n", results, probe)


def test_benchmarks_page_has_its_markers_and_the_bench_records_the_machine():
    import benchmarks_page as bp

    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert page.count(bp.START) == 1 and page.count(bp.END) == 1
    sys.path.insert(0, str(ROOT / "bench"))
    import machine

    m = machine.describe()
    assert m["cores"] == os.cpu_count() and m["cpu"] and m["date"].startswith("20")
    assert json.loads(json.dumps(m)) == m
