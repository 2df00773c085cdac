"""The runs page's API: every run of a project summarised side by side, two runs compared line by
line, and the project's `compare` / `curve` results (experiments/<name>/) listed and served.

A run's summary reads only its own files (request.json, status.json, config.json, metrics.json),
so runs written by older versions show what they have. Experiment files are served from inside
their folder only (no `..`, no symlinks, a short list of types), with a sandboxing CSP: a page
there can draw but cannot call this API as the user.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from . import jobs
from .contract import MAX_NAME, NAME_RE, RUN_ID_RE, is_file_name
from .projects import Project, WebError, safe_name

Value = str | int | float | bool | None
Group = Literal["setting", "accuracy", "size", "time"]
Unit = Literal["fraction", "bytes", "seconds", "ms", "count"] | None
EXPERIMENTS = "experiments"
EXPERIMENT_KINDS = ("compare", "curve")
# What an experiment folder may serve, with its type (anything else is 404).
SERVED = {".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json",
          ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".csv": "text/csv; charset=utf-8",
          ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
SANDBOX = ("sandbox allow-scripts; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
           "script-src 'unsafe-inline'; media-src data:")
# The contract's rules (web/contract.py), so the server checks exactly what the schema publishes.
RUN_ID_PATTERN = RUN_ID_RE

# -- response models -------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str


class ErrorResponse(BaseModel):
    """The one error shape every route answers with."""

    error: ErrorDetail


class Item(BaseModel):
    key: str = Field(description="stable id, e.g. 'backbone', 'test_accuracy', 'size:onnx-int8', 'time:export_s'")
    label: str
    group: Group
    value: Value
    unit: Unit = Field(default=None, description="fraction (shown as %), bytes, seconds, ms or count; none for text")
    higher_is_better: bool | None = Field(default=None, description="for numbers: which way is better")


class RunSummary(BaseModel):
    id: str
    state: str
    created: str | None = None
    finished: str | None = None
    error: str | None = None
    report: str | None = Field(default=None, description="URL of the run's report.html, when done")
    settings: list[Item]
    results: list[Item] = Field(description="accuracies, sizes and times (empty unless done)")


class Experiment(BaseModel):
    name: str
    kind: Literal["compare", "curve"]
    created: str | None = None
    data: str | None = Field(default=None, description="the data folder it ran on, as recorded")
    files: list[str]
    url: str = Field(description="URL of its folder: a file is url + its name")
    index: str | None = Field(default=None, description="URL of its index.html")


class History(BaseModel):
    runs: list[RunSummary] = Field(description="newest first")
    experiments: list[Experiment]


class Difference(BaseModel):
    key: str
    label: str
    group: Group
    unit: Unit = None
    a: Value
    b: Value
    delta: float | None = Field(default=None, description="b - a, for numbers")
    differs: bool
    better: Literal["a", "b"] | None = Field(default=None, description="the run with the better number")


class Comparison(BaseModel):
    a: RunSummary
    b: RunSummary
    rows: list[Difference]
    differing_settings: int
    differing_results: int


# -- summaries ---------------------------------------------------------------------------------------
def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _asked(value, none: str) -> Value:
    return none if value is None else value


def _settings(request: dict, config: dict, metrics: dict) -> list[Item]:
    opts = request.get("options") or {}
    used = config.get("options") or {}
    hp = used.get("hparams") or {}
    bb = metrics.get("backbone") or {}
    training = metrics.get("training") or {}
    chosen = (training.get("head_selection") or {}).get("chosen") or {}
    ft = metrics.get("fine_tune") or {}
    augment = opts.get("augment")
    views = training.get("augmented_views")
    rows: list[tuple[str, str, Value, Unit]] = [
        ("backbone", "backbone", bb.get("name") or opts.get("backbone") or "automatic", None),
        ("input_size", "input size (px)" if "input_size" in bb else "sample rate (Hz)",
         bb.get("input_size", bb.get("sample_rate")), None),
        ("augmentation", "augmentation asked", {True: "on", False: "off"}.get(augment, "chosen on validation"), None),
        ("augmented_views", "augmented views used", views, "count"),
        ("fine_tune", "fine-tune asked", _asked(opts.get("fine_tune"), "off"), None),
        ("fine_tune_blocks", "blocks fine-tuned", ft.get("chosen_k", 0 if metrics else None), "count"),
        ("epochs", "most epochs", hp.get("epochs", opts.get("epochs")), "count"),
        ("batch_size", "batch size", hp.get("batch_size", opts.get("batch_size")), "count"),
        ("learning_rate", "learning rate", hp.get("learning_rate", opts.get("learning_rate")), None),
        ("dropout", "dropout", hp.get("dropout", opts.get("dropout")), None),
        ("weight_decay", "weight decay (used)", chosen.get("weight_decay", hp.get("weight_decay")), None),
        ("label_smoothing", "label smoothing (used)", chosen.get("label_smoothing", hp.get("label_smoothing")), None),
        ("seed", "seed", hp.get("seed", opts.get("seed", 0)), None),
        ("auto_minutes", "automatic search (minutes)", _asked(opts.get("auto_minutes"), "off"), None),
        ("formats", "formats", ", ".join(config.get("formats") or request.get("formats") or []) or "default", None),
    ]
    if metrics:
        rows.append(("classes", "classes", len(metrics.get("classes") or []), "count"))
        rows += [(f"split:{k}", f"{k} samples", v, "count") for k, v in (metrics.get("splits") or {}).items()]
    return [Item(key=k, label=label, group="setting", value=v, unit=unit) for k, label, v, unit in rows]


def _results(metrics: dict) -> list[Item]:
    if not metrics:
        return []
    out = []

    def add(key: str, label: str, group: Group, value, unit: Unit, higher: bool | None) -> None:
        if value is not None:
            out.append(Item(key=key, label=label, group=group, value=value, unit=unit, higher_is_better=higher))

    training = metrics.get("training") or {}
    add("val_accuracy", "val accuracy (float)", "accuracy", (metrics.get("val") or {}).get("accuracy"), "fraction", True)
    add("test_accuracy", "test accuracy (float)", "accuracy", (metrics.get("test") or {}).get("accuracy"), "fraction", True)
    add("test_loss", "test loss (float)", "accuracy", (metrics.get("test") or {}).get("loss"), None, False)
    add("misclassified", "misclassified test samples", "accuracy", len(metrics.get("misclassified") or []), "count", False)
    add("best_epoch", "best epoch", "accuracy", training.get("best_epoch"), "count", None)
    exports = [e for e in metrics.get("exports") or [] if e.get("format") != "c-array"]
    for e in exports:
        add(f"accuracy:{e['format']}", f"{e['format']} test accuracy", "accuracy", e.get("test_accuracy"), "fraction", True)
    for e in exports:
        add(f"size:{e['format']}", f"{e['format']} size", "size", e.get("size_bytes"), "bytes", False)
    for e in exports:
        add(f"latency:{e['format']}", f"{e['format']} latency", "time", e.get("latency_ms"), "ms", False)
    timings = metrics.get("timings") or {}
    for k, v in timings.items():
        if isinstance(v, (int, float)):
            add(f"time:{k}", k.removesuffix("_s").replace("_", " ") + " time", "time", v, "seconds", False)
    return out


def run_summary(project: Project, path: Path) -> RunSummary:
    status = jobs.read_status(path)
    done = status.get("state") == "done"
    metrics = _read(path / "metrics.json") if done else {}
    return RunSummary(
        id=path.name, state=status.get("state", "queued"), created=status.get("created"),
        finished=status.get("finished"), error=status.get("error"),
        report=(f"/api/v1/projects/{quote(project.name, safe='')}/runs/{path.name}/files/report.html"
                if done and (path / "report.html").is_file() else None),
        settings=_settings(_read(path / "request.json"), _read(path / "config.json") if done else {}, metrics),
        results=_results(metrics))


def compare(a: RunSummary, b: RunSummary) -> Comparison:
    """Every setting and result of either run, in order, with b - a for numbers."""
    rows: list[Difference] = []
    items_a = {i.key: i for i in a.settings + a.results}
    items_b = {i.key: i for i in b.settings + b.results}
    keys = list(dict.fromkeys([i.key for i in a.settings + b.settings] + [i.key for i in a.results + b.results]))
    for key in keys:
        ia, ib = items_a.get(key), items_b.get(key)
        ref = ia or ib
        va, vb = (ia.value if ia else None), (ib.value if ib else None)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        delta = float(vb) - float(va) if numeric else None
        better = None
        if numeric and ref.higher_is_better is not None and delta:
            better = "b" if (delta > 0) == ref.higher_is_better else "a"
        rows.append(Difference(key=key, label=ref.label, group=ref.group, unit=ref.unit, a=va, b=vb,
                               delta=round(delta, 6) if delta is not None else None, differs=va != vb, better=better))
    return Comparison(a=a, b=b, rows=rows, differing_settings=sum(r.differs for r in rows if r.group == "setting"),
                      differing_results=sum(r.differs for r in rows if r.group != "setting"))


# -- experiments -------------------------------------------------------------------------------------
def _experiment_dir(project: Project, name: str) -> Path:
    name = safe_name(name, "experiment")
    base = project.root / EXPERIMENTS
    folder = base / name
    if base.is_symlink() or folder.is_symlink() or not folder.is_dir():
        raise WebError(404, "not_found", f"experiment {name!r} not found in project {project.name!r}")
    real = folder.resolve()
    if real.parent != (project.root / EXPERIMENTS).resolve():
        raise WebError(404, "not_found", f"experiment {name!r} not found in project {project.name!r}")
    return folder


def _experiment(project: Project, folder: Path) -> Experiment | None:
    results = folder / "results.json"
    if results.is_symlink() or not results.is_file():
        return None
    data = _read(results)
    if data.get("kind") not in EXPERIMENT_KINDS:
        return None
    files = sorted(f.name for f in folder.iterdir() if f.is_file() and not f.is_symlink()
                   and not f.name.startswith(".") and f.suffix.lower() in SERVED)
    base = f"/api/v1/projects/{quote(project.name, safe='')}/experiments/{quote(folder.name, safe='')}/files/"
    created = data.get("created")
    source = data.get("data")
    return Experiment(name=folder.name, kind=data["kind"], created=created if isinstance(created, str) else None,
                      data=source if isinstance(source, str) else None, files=files, url=base,
                      index=base + "index.html" if "index.html" in files else None)


def list_experiments(project: Project) -> list[Experiment]:
    base = project.root / EXPERIMENTS
    if base.is_symlink() or not base.is_dir():
        return []
    out = []
    for folder in sorted(base.iterdir(), key=lambda p: p.name):
        if folder.is_dir() and not folder.is_symlink() and not folder.name.startswith("."):
            found = _experiment(project, folder)
            if found:
                out.append(found)
    return out


def experiment_file(project: Project, name: str, filename: str) -> Path:
    folder = _experiment_dir(project, name)
    missing = WebError(404, "not_found", f"{filename}: no such file in experiment {name!r}")
    if _experiment(project, folder) is None:
        raise missing
    target = folder / filename
    if (not is_file_name(filename) or filename.startswith(".")
            or Path(filename).suffix.lower() not in SERVED or target.is_symlink() or not target.is_file()
            or target.resolve().parent != folder.resolve()):
        raise missing
    return target


# -- routes ------------------------------------------------------------------------------------------
ERRORS = {400: {"model": ErrorResponse, "description": "a bad project, run or file name"},
          404: {"model": ErrorResponse, "description": "no such project, run, experiment or file"},
          422: {"model": ErrorResponse, "description": "a missing or malformed parameter"}}


# The name rule (contract.NAME_RE) is published on the parameter and checked by safe_name in the
# lookup: pydantic's own regex engine has no look-ahead.
ProjectName = Annotated[str, PathParam(description="project name", min_length=1, max_length=MAX_NAME,
                                       json_schema_extra={"pattern": NAME_RE})]


def add_history_routes(app: FastAPI, project) -> None:
    """`project(name) -> Project` is the app's own lookup (404s and all)."""

    @app.get("/api/v1/projects/{name}/history", response_model=History, responses=ERRORS, tags=["runs"])
    def history(name: ProjectName) -> History:
        """Every run of the project (settings, accuracies, sizes, times) and its compare/curve results."""
        p = project(name)
        runs = [run_summary(p, p.runs_dir / r["id"]) for r in jobs.list_runs(p)]
        return History(runs=runs, experiments=list_experiments(p))

    @app.get("/api/v1/projects/{name}/history/compare", response_model=Comparison, responses=ERRORS, tags=["runs"])
    def compare_runs(name: ProjectName,
                     a: str = Query(description="run id (the reference)", pattern=RUN_ID_PATTERN),
                     b: str = Query(description="run id (compared with a)", pattern=RUN_ID_PATTERN)) -> Comparison:
        """Two runs line by line: each setting and result, whether it differs, and b - a for numbers."""
        p = project(name)
        return compare(run_summary(p, jobs.run_dir(p, a)), run_summary(p, jobs.run_dir(p, b)))

    @app.get("/api/v1/projects/{name}/experiments/{experiment}/files/{filename}", tags=["runs"],
             response_class=FileResponse,
             responses={200: {"description": "the file (html, svg, json, md, txt, csv, png, jpg)",
                              "content": {t.split(";")[0]: {} for t in SERVED.values()}}, **ERRORS})
    def experiment_download(name: ProjectName,
                            experiment: str = PathParam(description="folder under the project's experiments/",
                                                        min_length=1, max_length=MAX_NAME,
                                                        json_schema_extra={"pattern": NAME_RE}),
                            filename: str = PathParam(description="a file directly inside it")):
        """A file of one `edgemaker compare` / `curve` result folder under the project's experiments/."""
        target = experiment_file(project(name), experiment, filename)
        return FileResponse(target, media_type=SERVED[target.suffix.lower()],
                            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": SANDBOX,
                                     "Cache-Control": "no-cache"})
