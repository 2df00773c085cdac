"""The end of `make demo`: what each demo run got right and wrong, and where its report is.

    python -m edgemaker.demo demo-run demo-run-audio

Reads each run folder's metrics.json (written by `edgemaker train`), so it shows the same numbers
as the report: test accuracy of the float model and of every exported file, and every test sample
the float model got wrong, most confident mistake first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The generated shapes and tones moved to edgemaker.synthetic; importable here too for older callers.
from .synthetic import make_dataset, make_sound_dataset  # noqa: F401


def summary_lines(run: Path) -> list[str]:
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    noun = "images" if metrics["task"].startswith("image") else "clips"
    lines = [f"{run}: {', '.join(metrics['classes'])} ({metrics['backbone']['name']})",
             f"  test split: {test['samples']} {noun}, float model accuracy {test['accuracy']:.3f}"]
    for export in metrics.get("exports", []):
        if export.get("test_accuracy") is not None:
            lines.append(f"  {Path(export['path']).name:<30} accuracy {export['test_accuracy']:.3f}, "
                         f"{export['size_bytes'] / 1e6:.2f} MB")
    wrong = metrics.get("misclassified", [])
    lines.append(f"  wrong on the test split: {len(wrong)}" + (":" if wrong else ""))
    lines += [f"    {w['path']}: is {w['label']}, predicted {w['predicted']} ({w['confidence']:.3f})" for w in wrong]
    lines.append(f"  report: {run / 'report.html'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders written by `edgemaker train`")
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "metrics.json").is_file():
            sys.exit(f"error: {run}/metrics.json not found; run `edgemaker train ... --out {run}` first")
        print("\n".join(summary_lines(run)))


if __name__ == "__main__":
    main()
