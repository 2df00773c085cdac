"""`edgemaker data clean`: a copy of the folder without unusable files and extra exact copies.

Files whose bytes appear under two labels are left out too, but never silently: they are listed on
stdout and in NEW/cross_label_duplicates.json so a person can decide which label is right.
"""

from __future__ import annotations

from pathlib import Path

from ...atomic import write_json
from ...progress import Progress
from .common import inner_path, load, rel, require_samples
from .output import check_out, write_folder

CROSS_LABEL_FILE = "cross_label_duplicates.json"
MANIFEST = "clean.json"


def clean_folder(root: Path, out: Path, link: bool = False, task: str | None = None,
                 progress: Progress | None = None) -> dict:
    """Write the cleaned copy (same layout as the source) and return what was kept and left out."""
    check_out(root, out)
    report = load(Path(root), task, progress)
    require_samples(report)
    r = lambda p: rel(report, p)  # noqa: E731
    files = []
    for s in report.samples:
        parts = s.path.relative_to(report.root).parts
        prefix = f"{parts[0]}/" if report.presplit else ""
        files.append((s.path, f"{prefix}{s.label}/{inner_path(report, s.path).as_posix()}"))
    cross = [{"classes": labels, "paths": [r(p) for p in paths],
              "decision": "left out of the cleaned copy; copy the file back into its right class"}
             for labels, paths in report.conflicts]
    in_conflict = {p for _, ps in report.conflicts for p in ps}
    dropped_dups = [{"path": r(a), "duplicate_of": r(b)} for a, b in report.duplicates]
    removed = [{"path": r(p), "reason": why} for p, why in report.skipped
               if p not in in_conflict and p not in {a for a, _ in report.duplicates}]
    summary = {"source": str(report.root), "out": str(out), "kept": len(files),
               "removed_unusable": removed, "removed_duplicates": dropped_dups,
               "cross_label_duplicates": cross}

    def extra(tmp: Path) -> None:
        write_json(tmp / CROSS_LABEL_FILE, cross)
        write_json(tmp / MANIFEST, summary)

    summary["written"] = write_folder(out, files, link, extra)
    return summary
