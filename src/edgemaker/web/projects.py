"""Projects on disk: the same `<class>/<files>` folder the CLI trains on, plus the web app's runs.

    HOME/<project>/project.json        name, task (image | audio), created
    HOME/<project>/data/<class>/<file>  what `edgemaker train HOME/<project>/data` reads
    HOME/<project>/runs/<run>/          one training run (see jobs.py)

Every name that arrives from a request passes `safe_name` or `safe_filename`, and every path is
resolved and checked to stay inside its project (no `..`, absolute paths or symlinks out).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_json
from ..data.folders import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, SPLIT_NAMES
from .contract import CLASS_RE, MAX_NAME, NAME_RE, WINDOWS_RESERVED_RE, is_file_name
from .errors import WebError

TASKS = ("image", "audio")
_FILE_CHARS = re.compile(r"[^\w.\-]+")


def safe_name(name: object, what: str) -> str:
    """The one validator of every name a request gives (project, class, experiment; sample files via
    `safe_filename`): refused, never silently changed, when it is not portable or could deceive.
    The rule is the schema's pattern (contract.NAME_RE / CLASS_RE), checked on the name as sent;
    the name kept is its NFC form, trimmed."""
    if not isinstance(name, str):
        raise WebError(400, "invalid_name", f"{what} name must be text")
    if any("\ud800" <= c <= "\udfff" for c in name):  # before anything encodes it
        raise WebError(400, "invalid_name", f"{what} name holds a lone surrogate ({shown(name)}): not valid Unicode")
    stripped = unicodedata.normalize("NFC", name.strip())
    if not stripped or len(name) > MAX_NAME or len(stripped.encode("utf-8")) > 255:
        raise WebError(400, "invalid_name", f"{what} name must be 1 to {MAX_NAME} characters")
    if what == "class" and stripped.lower() in SPLIT_NAMES:
        raise WebError(400, "invalid_name", f"class name {stripped!r} is reserved for train/val/test split folders; "
                                            "choose another name")
    if re.match(rf"^{WINDOWS_RESERVED_RE}$", stripped):
        raise WebError(400, "invalid_name", f"{what} name {stripped!r} is reserved on Windows (CON, PRN, AUX, NUL, "
                                            "COM1-9, LPT1-9, with any extension); choose another name")
    if not re.match(CLASS_RE if what == "class" else NAME_RE, name):
        raise WebError(400, "invalid_name", f"{what} name {shown(stripped)} may not contain / \\ : * ? \" < > |, control, "
                                            "bidi or invisible formatting characters, nor start or end with a dot "
                                            "or an invisible character")
    return stripped


def shown(text: str) -> str:
    """`text` quoted for a message, every invisible or unprintable character as its escape."""
    return "'" + "".join(c if c.isprintable() and not unicodedata.category(c).startswith("C")
                         else f"\\u{ord(c):04x}" for c in text) + "'"


def extensions(task: str) -> frozenset[str]:
    return IMAGE_EXTENSIONS if task == "image" else AUDIO_EXTENSIONS


def safe_filename(original: str, task: str) -> str:
    """The upload's base name reduced to letters, digits, `._-`, with an extension the task reads."""
    base = unicodedata.normalize("NFC", re.split(r"[\\/]", original or "")[-1])
    stem, dot, ext = base.rpartition(".")
    ext = ("." + ext.lower()) if dot else ""
    if ext not in extensions(task):
        kinds = ", ".join(sorted(extensions(task)))
        what = "an image" if task == "image" else "a sound"
        raise WebError(415, "unsupported_type", f"{shown(base) if base else '(no name)'}: not {what} file name; "
                                                f"use one of {kinds}")
    stem = _FILE_CHARS.sub("_", stem).strip("._-")[:60] or "sample"
    if re.match(rf"^{WINDOWS_RESERVED_RE}$", stem):
        raise WebError(400, "invalid_name", f"{stem + ext}: a name reserved on Windows (CON, PRN, AUX, NUL, COM1-9, "
                                            "LPT1-9); rename the file")
    return stem + ext


@dataclass
class Project:
    root: Path
    name: str
    task: str
    created: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    # -- paths -------------------------------------------------------------------------------
    def _inside(self, path: Path, base: Path) -> Path:
        """`path` if it and everything on the way stays inside `base` (symlinks included)."""
        real_base = base.resolve()
        real = path.resolve()
        if real != real_base and real_base not in real.parents:
            raise WebError(400, "outside_project", f"{path.name}: points outside the project")
        return path

    def class_dir(self, name: str, must_exist: bool = True) -> Path:
        name = safe_name(name, "class")
        path = self._inside(self.data_dir / name, self.data_dir)
        if path.is_symlink():
            raise WebError(400, "outside_project", f"class {name!r} is a symbolic link; it is not served")
        if must_exist and not path.is_dir():
            raise WebError(404, "not_found", f"class {name!r} not found in project {self.name!r}")
        return path

    def sample_path(self, label: str, filename: str) -> Path:
        folder = self.class_dir(label)
        if not is_file_name(filename):
            raise WebError(400, "invalid_name", f"{filename!r}: not a sample file name")
        path = self._inside(folder / filename, folder)
        if path.is_symlink() or not path.is_file():
            raise WebError(404, "not_found", f"sample {label}/{filename} not found")
        return path

    # -- classes and samples -------------------------------------------------------------------
    def classes(self) -> list[dict]:
        out = []
        if self.data_dir.is_dir():
            for d in sorted(self.data_dir.iterdir(), key=lambda p: p.name):
                if d.is_dir() and not d.is_symlink() and not d.name.startswith("."):
                    out.append({"name": d.name, "count": len(self._sample_files(d))})
        return out

    def _sample_files(self, folder: Path) -> list[Path]:
        exts = extensions(self.task)
        return sorted((p for p in folder.iterdir() if p.is_file() and not p.is_symlink()
                       and not p.name.startswith(".") and p.suffix.lower() in exts), key=lambda p: p.name)

    def samples(self, label: str) -> list[dict]:
        return [{"name": p.name, "size_bytes": p.stat().st_size} for p in self._sample_files(self.class_dir(label))]

    def add_class(self, name: str) -> str:
        path = self.class_dir(name, must_exist=False)
        if path.exists():
            raise WebError(409, "exists", f"class {path.name!r} already exists")
        path.mkdir(parents=True)
        return path.name

    def rename_class(self, old: str, new: str) -> str:
        src = self.class_dir(old)
        dst = self.class_dir(new, must_exist=False)
        if dst.exists():
            raise WebError(409, "exists", f"class {dst.name!r} already exists")
        src.rename(dst)
        return dst.name

    def delete_class(self, name: str) -> None:
        shutil.rmtree(self.class_dir(name))

    def add_sample(self, label: str, original_name: str, data: bytes) -> str:
        """Write one checked upload atomically under a fresh name; returns the name used."""
        folder = self.class_dir(label)
        name = safe_filename(original_name, self.task)
        stem, ext = name.rsplit(".", 1)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=folder)  # hidden: never read as a sample
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            target = folder / name
            while True:
                try:  # link() refuses an existing name: two tabs uploading "photo.jpg" keep both
                    os.link(tmp, target)
                    return target.name
                except FileExistsError:
                    target = folder / f"{stem}-{secrets.token_hex(3)}.{ext}"
        finally:
            os.unlink(tmp)

    def delete_sample(self, label: str, filename: str) -> None:
        self.sample_path(label, filename).unlink()

    def check_trainable(self) -> None:
        """Validation's own rules on the folder as training will scan it (every class folder has files
        of the task's kind, at least two classes), so a run that would fail at once is refused before it
        starts. Files were decode-checked on upload; duplicates are found by the run."""
        from ..data.folders import modality_of, scan_folder
        from ..data.validate import Sample, ValidationReport, require_usable
        from ..errors import DataError

        scanned = scan_folder(self.data_dir)
        samples = [Sample(f.path, f.label, "", f.split) for f in scanned.files if modality_of(f.path) == self.task]
        report = ValidationReport(root=Path("data"), presplit=scanned.presplit, samples=samples, modality=self.task)
        try:
            require_usable(report, scanned.labels, min_classes=2)
        except DataError as exc:
            raise WebError(409, "not_enough_data", str(exc)) from None

    def to_dict(self) -> dict:
        return {"name": self.name, "task": self.task, "created": self.created, "classes": self.classes(),
                "data_dir": f"{self.name}/data"}  # inside the projects folder: the server's own paths stay private


class ProjectStore:
    """The projects in one home folder."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    def list(self) -> list[dict]:
        if not self.home.is_dir():
            return []
        out = []
        for d in sorted(self.home.iterdir(), key=lambda p: p.name):
            if (d / "project.json").is_file() and not d.is_symlink():
                try:
                    p = self.get(d.name)
                except WebError:
                    continue
                out.append({"name": p.name, "task": p.task, "created": p.created,
                            "classes": len(p.classes())})
        return out

    def get(self, name: str) -> Project:
        name = safe_name(name, "project")
        root = self.home / name
        meta_file = root / "project.json"
        if root.is_symlink() or not meta_file.is_file():
            raise WebError(404, "not_found", f"project {name!r} not found")  # never the server's folders
        try:
            meta = json.loads(meta_file.read_text("utf-8"))
            task = meta["task"]
            if task not in TASKS:
                raise ValueError(task)
        except (ValueError, KeyError, TypeError):
            raise WebError(500, "bad_project", f"project {name!r}: its project.json is not valid; fix or remove it") from None
        return Project(root, name, task, str(meta.get("created", "")))

    def create(self, name: str, task: str) -> Project:
        name = safe_name(name, "project")
        if task not in TASKS:
            raise WebError(400, "invalid_task", f"task must be one of {', '.join(TASKS)}")
        root = self.home / name
        if root.exists():
            raise WebError(409, "exists", f"project {name!r} already exists")
        (root / "data").mkdir(parents=True)
        (root / "runs").mkdir()
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        write_json(root / "project.json", {"name": name, "task": task, "created": created})
        return self.get(name)
