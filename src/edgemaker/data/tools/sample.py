"""`edgemaker data sample`: a balanced, seeded subset with N files per class (for learning
curves and quick trials), refused with the short classes named when a class has fewer than N."""

from __future__ import annotations

import random
from pathlib import Path

from ...errors import DataError
from ...progress import Progress
from .common import by_class, inner_path, load, rel, require_samples
from .output import check_out, unique_destinations, write_folder


def sample_folder(root: Path, out: Path, per_class: int, seed: int = 0, link: bool = False,
                  task: str | None = None, progress: Progress | None = None) -> dict:
    """Write `out/<class>/...` with `per_class` usable files of every class; return a summary.

    Usable means what training would use: corrupt files, extra exact copies and files under two
    labels are never picked. A source with train/val/test is pooled per class.
    """
    if per_class < 1:
        raise DataError(f"--per-class {per_class}: give a positive number of files per class")
    check_out(root, out)
    report = load(Path(root), task, progress)
    require_samples(report)
    classes = by_class(report.samples)
    for label in report.declared - set(classes):
        classes[label] = []
    short = {c: len(v) for c, v in sorted(classes.items()) if len(v) < per_class}
    if short:
        listed = ", ".join(f"{c} ({n})" for c, n in short.items())
        raise DataError(f"{report.root}: {len(short)} class(es) have fewer than {per_class} usable files: {listed}; "
                        f"lower --per-class to {min(short.values())} or add files to those classes")
    rng = random.Random(seed)
    picked = []
    for label in sorted(classes):
        picked += rng.sample(classes[label], per_class)
    files = unique_destinations((s.path, s.label, inner_path(report, s.path)) for s in picked)
    how = write_folder(out, files, link)
    return {"source": str(report.root), "out": str(out), "per_class": per_class, "seed": seed,
            "classes": len(classes), "files": len(files), "written": how,
            "picked": [rel(report, s.path) for s in picked]}
