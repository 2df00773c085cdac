"""What every dataset tool starts from: the validation pass, without refusing odd folders."""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ...progress import Progress
from ..validate import Sample, ValidationReport, validate_folder


def load(root: Path, task: str | None = None, progress: Progress | None = None) -> ValidationReport:
    """Validate `root` read-only; an empty class or a single class is reported, not refused."""
    return validate_folder(root, progress=progress, modality=task, check_usable=False)


def require_samples(report: ValidationReport) -> None:
    if not report.samples:
        noun = "images" if report.modality == "image" else "sound files"
        raise DataError(f"{report.root}: no usable {noun}; put them in one folder per class, "
                        f"e.g. {report.root / 'cats' / '001.jpg'}")


def inner_path(report: ValidationReport, path: Path) -> Path:
    """A file's path inside its class folder (nested folders kept)."""
    parts = path.relative_to(report.root).parts
    return Path(*parts[2 if report.presplit else 1:])


def rel(report: ValidationReport, path: Path) -> str:
    try:
        return path.relative_to(report.root).as_posix()
    except ValueError:
        return str(path)


def by_class(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: (s.label, str(s.path))):
        out.setdefault(s.label, []).append(s)
    return out
