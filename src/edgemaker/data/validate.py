"""The validation pass that runs before any heavy work: what is usable, what is skipped and why."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..faults import point
from ..parallel import ordered_map
from ..features.cache import FeatureCache
from ..progress import Progress, SilentProgress
from .folders import SPLITS, FoundFile, modality_of, scan_folder
from .images import ImageDecodeError, decode_image

MEDIA_KIND = {"image": "image-v2", "audio": "audio-v2"}  # v2: the hostile-file guards (faults branch)
SILENT_DB = -60.0

@dataclass(frozen=True)
class Sample:
    """One usable file: where it is, its class, its content hash and (if given) its split."""

    path: Path  # or a RemotePath: a file in an fsspec store, kept as its URL (data/remote.py)
    label: str
    content: str
    split: str | None = None


@dataclass
class ValidationReport:
    root: Path
    presplit: bool
    samples: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (dropped copy, kept file)
    conflicts: list[tuple[list[str], list[Path]]] = field(default_factory=list)
    modality: str = "image"
    notes: list[tuple[Path, str]] = field(default_factory=list)  # usable, but worth knowing (silent clips)
    declared: set[str] = field(default_factory=set)  # every class folder, even one left empty

    @property
    def classes(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    def counts(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.samples)
        return {c: counts[c] for c in self.classes}

    def summary_lines(self) -> list[str]:
        noun = "images" if self.modality == "image" else "sound clips"
        lines = [f"{len(self.samples)} usable {noun} in {len(self.classes)} classes ({self.root})"]
        lines += [f"  {label}: {n}" for label, n in self.counts().items()]
        if self.skipped:
            reasons = Counter(r.split(" (")[0] for _, r in self.skipped)
            lines.append(f"skipped {len(self.skipped)} files: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
            lines += [f"  skip {p}: {r}" for p, r in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more (see metrics.json)")
        lines += [f"  note {p}: {n}" for p, n in self.notes[:20]]
        return lines

    def to_dict(self) -> dict:
        rel = self._rel
        return {
            "root": str(self.root),
            "modality": self.modality,
            "layout": "presplit" if self.presplit else "class-folders",
            "classes": self.counts(),
            "skipped": [{"path": rel(p), "reason": r} for p, r in self.skipped],
            "duplicates": [{"dropped": rel(a), "kept": rel(b)} for a, b in self.duplicates],
            "conflicts": [{"classes": c, "paths": [rel(p) for p in ps]} for c, ps in self.conflicts],
            "notes": [{"path": rel(p), "note": n} for p, n in self.notes],
        }

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


Verdict = tuple  # (content sha256 or None, problem or None, info JSON or None) for one file


def check_bytes(data: bytes, modality: str) -> tuple[str | None, str | None]:
    """(problem, info) of one file's bytes: does it decode as the task's kind of media?"""
    if not data:
        return "empty file (0 bytes)", None
    if modality == "image":
        try:
            im = decode_image(data, min_side=32)
        except ImageDecodeError as exc:
            return str(exc), None
        return None, json.dumps({"width": im.width, "height": im.height})
    from .audio import AudioDecodeError, check_audio

    try:
        return None, json.dumps(check_audio(data))
    except AudioDecodeError as exc:
        return str(exc), None


def file_verdict(path, modality: str) -> Verdict:
    """Read a file once: its hash and whether it decodes (what an engine's worker runs per file)."""
    from .sources import read_bytes

    try:
        data = read_bytes(path)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})", None
    if not data:
        return None, "empty file (0 bytes)", None
    return (hashlib.sha256(data).hexdigest(), *check_bytes(data, modality))


def cacheable(problem: str | None) -> bool:
    """Verdicts are remembered on content, except transient read failures."""
    return not (problem or "").startswith("unreadable")


def _hash_file(path) -> Verdict:
    from .sources import read_bytes

    point("validate")
    try:
        data = read_bytes(path)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})", None
    if not data:
        return None, "empty file (0 bytes)", None
    return hashlib.sha256(data).hexdigest(), None, None


def _check_file(path, modality: str) -> tuple[str | None, str | None]:
    from .sources import read_bytes

    try:
        return check_bytes(read_bytes(path), modality)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})", None


def local_verdicts(files: list[FoundFile], modality: str, cache: FeatureCache | None, tick=lambda n: None,
                   workers: int | None = None) -> list[Verdict]:
    """One verdict per file, in threads: hash everything, decode-check only contents the cache has no
    verdict for. At most a few files are read at a time (flat memory however many files)."""
    kind = MEDIA_KIND[modality]
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        verdicts = []
        for v in ordered_map(pool, [(f.path,) for f in files], _hash_file, 4 * workers):
            verdicts.append(v)
            tick(1)
        known = cache.get_media({v[0] for v in verdicts if v[0]}, kind) if cache else {}
        unknown: dict[str, Path] = {}
        for f, (content, _, _) in zip(files, verdicts):
            if content and content not in known and content not in unknown:
                unknown[content] = f.path
        jobs = [(path, modality) for path in unknown.values()]
        checked = dict(zip(unknown, ordered_map(pool, jobs, _check_file, 4 * workers)))
    if cache and checked:
        cache.put_media({c: v for c, v in checked.items() if cacheable(v[0])}, kind)
    results = {**known, **checked}
    return [v if v[0] is None else (v[0], *results[v[0]]) for v in verdicts]


def detect_modality(files: list[FoundFile], root: Path) -> str:
    kinds = {modality_of(f.path) for f in files}
    if len(kinds) > 1:
        n_audio = sum(modality_of(f.path) == "audio" for f in files)
        raise DataError(f"{root}: mixes images ({len(files) - n_audio}) and sounds ({n_audio}); keep one kind "
                        "per data folder, or pass --task image / --task audio to use one kind only")
    return kinds.pop() if kinds else "image"


def validate_folder(
    root: str | os.PathLike[str],
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    min_classes: int = 2,
    modality: str | None = None,
    check_usable: bool = True,
    engine=None,
) -> ValidationReport:
    """Scan, hash and decode-check every candidate file; raise DataError on what cannot be used.

    `modality`: "image" or "audio"; None detects it from the files (mixing both is an error).
    `check_usable=False`: report empty or one-class folders instead of refusing them (dataset tools).
    `engine`: where files are read and checked (features/engines.py); None: threads here.
    """
    progress = progress or SilentProgress()
    scanned = scan_folder(root)
    if modality is None:
        modality = detect_modality(scanned.files, scanned.root)
    other = [f for f in scanned.files if modality_of(f.path) != modality]
    scanned.files = [f for f in scanned.files if modality_of(f.path) == modality]
    report = ValidationReport(root=scanned.root, presplit=scanned.presplit, samples=[], skipped=list(scanned.ignored),
                              modality=modality)
    report.skipped += [(f.path, f"not {'an image' if modality == 'image' else 'a sound'} ({modality} task)")
                       for f in other]
    bar = progress.bar(len(scanned.files), "validate")
    if engine is None:
        verdicts = local_verdicts(scanned.files, modality, cache, bar.update, workers)
    else:
        verdicts = engine.verdicts(scanned.files, modality, cache, bar.update)
    by_content: dict[str, list[FoundFile]] = defaultdict(list)
    info_of: dict[str, str | None] = {}
    unreadable = [(f.path, problem) for f, (content, problem, _) in zip(scanned.files, verdicts) if content is None]
    report.skipped += unreadable  # files that could not be read come first, as before
    for found, (content, problem, info) in zip(scanned.files, verdicts):
        if content is None:
            continue
        if problem:
            report.skipped.append((found.path, problem))
        else:
            by_content[content].append(found)
            info_of[content] = info
    bar.close()

    order = {s: i for i, s in enumerate((*SPLITS, None))}
    for content, copies in by_content.items():
        labels = sorted({f.label for f in copies})
        if len(labels) > 1:
            report.conflicts.append((labels, [f.path for f in copies]))
            for f in copies:
                what = "image" if report.modality == "image" else "sound file"
                report.skipped.append((f.path, f"same {what} in classes {', '.join(labels)}"))
            continue
        copies.sort(key=lambda f: (order[f.split], str(f.path)))
        kept = copies[0]
        for dup in copies[1:]:
            report.duplicates.append((dup.path, kept.path))
            why = "would leak into evaluation" if dup.split != kept.split else "exact duplicate"
            report.skipped.append((dup.path, f"duplicate of {kept.path.name} ({why})"))
        report.samples.append(Sample(kept.path, kept.label, content, kept.split))
        info = info_of[content]
        if modality == "audio" and info and json.loads(info)["loudest_db"] < SILENT_DB:
            report.notes.append((kept.path, f"silent throughout (below {SILENT_DB:.0f} dBFS); kept whole"))
    report.samples.sort(key=lambda s: (s.label, str(s.path)))
    report.declared = scanned.labels
    if check_usable:
        require_usable(report, scanned.labels, min_classes)
    return report


def require_usable(report: ValidationReport, declared: set[str], min_classes: int) -> None:
    """The rules a folder must meet to train (every class folder used, at least `min_classes`): the web
    app asks the same before it starts a run."""
    root = report.root
    if not report.samples:
        example = root / "cats" / "001.jpg" if report.modality == "image" else root / "dog" / "bark1.wav"
        hint = f"put {'images' if report.modality == 'image' else 'sound files'} in one folder per class, e.g. {example}"
        if report.skipped and all(why == "not inside a class folder" for _, why in report.skipped):
            raise DataError(f"{root}: its {len(report.skipped)} files are not in class folders; pass the folder that "
                            f"holds one subfolder per class (if '{root.name}' is one class, that is {root.parent})")
        if report.skipped:
            hint = f"all {len(report.skipped)} files were skipped (first: {report.skipped[0][0]}: {report.skipped[0][1]})"
        noun = "images" if report.modality == "image" else "sound files"
        raise DataError(f"{root}: no usable {noun}; {hint}")
    empty = sorted(declared - set(report.classes))
    if empty:
        raise DataError(
            f"{root}: class folder '{empty[0]}' has no usable files; add some to it or remove the folder"
        )
    if len(report.classes) < min_classes:
        raise DataError(
            f"{root}: found only one class ('{report.classes[0]}'); a classifier needs at least 2 class folders"
        )
