"""The web app's HTTP API (FastAPI): a thin layer over the project store, the training worker and
the exported-model runtime. Every error, whatever raised it, leaves as
`{"error": {"status", "code", "message"}}`."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..data.folders import MEDIA_EXTENSIONS as _EXTS
from ..errors import EdgemakerError
from . import contract, jobs
from .contract import errors
from .history import add_history_routes
from .memory import RELEASE_AFTER_BYTES, release_memory
from .projects import Project, ProjectStore, WebError
from .security import BodyRefused, Guard, SecurityConfig, error_body

STATIC = Path(__file__).parent / "static"
INTERNAL_FILES = frozenset({"status.json", "request.json", "events.jsonl", "worker.log"})  # the run's bookkeeping
log = logging.getLogger("edgemaker.web")


@dataclass
class WebConfig:
    home: Path | None = None  # the projects folder (None with `model`)
    model: Path | None = None  # serve this one exported file: predict API only
    security: SecurityConfig = field(default_factory=SecurityConfig)
    batch_window_ms: float = 5.0  # > 0: concurrent predictions share ONNX Runtime calls (batching.py); 0: off


class NewProject(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused (422), as on train
    name: str = Field(description="Folder name of the project", json_schema_extra=contract.NAME_SCHEMA)
    task: str = Field(description="image or audio", json_schema_extra={"enum": ["image", "audio"]})


class ClassName(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(json_schema_extra=contract.CLASS_SCHEMA)


def check_upload(data: bytes, task: str, name: str) -> None:
    """An image must decode; a sound must parse and hold samples. WebError(415) otherwise."""
    from ..data.audio import AudioDecodeError, check_audio
    from ..data.images import ImageDecodeError, decode_image

    try:
        if task == "image":
            decode_image(data, min_side=32)
        else:
            check_audio(data)
    except (ImageDecodeError, AudioDecodeError) as exc:
        raise WebError(415, "bad_content", f"{name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types on hostile input
        raise WebError(415, "bad_content", f"{name}: cannot be decoded ({type(exc).__name__})") from None


class ModelCache:
    """Exported models loaded once per file version (path, mtime)."""

    def __init__(self) -> None:
        self._models: dict[Path, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path):
        from ..export.runtime import load_exported

        mtime = path.stat().st_mtime
        with self._lock:
            hit = self._models.get(path)
            if hit and hit[0] == mtime:
                return hit[1]
        model = load_exported(path)
        with self._lock:
            self._models[path] = (mtime, model)
        return model

    def batcher(self, path: Path, window_ms: float):
        """The model's MicroBatcher (one per loaded model, so one thread runs each model)."""
        from .batching import MicroBatcher

        model = self.get(path)
        with self._lock:
            if getattr(model, "_web_batcher", None) is None:
                model._web_batcher = MicroBatcher(model, window_s=window_ms / 1000)
            return model._web_batcher


def _model_of_run(run: Path) -> Path | None:
    return next((run / name for name in ("model_int8.onnx", "model_fp32.onnx") if (run / name).is_file()), None)


def create_app(config: WebConfig) -> FastAPI:
    app = FastAPI(title="edgemaker", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json",
                  description="Local API of the edgemaker web app: projects, samples, training runs, predictions.")
    store = ProjectStore(config.home) if config.home else None
    models = ModelCache()
    limits = config.security.limits

    # -- one error shape ------------------------------------------------------------------------
    folders = [(Path.home(), "~")]
    if config.home:
        folders += [(config.home.resolve(), "<projects>"), (config.home.absolute(), "<projects>")]
    if config.model:
        folders += [(config.model.resolve().parent, "<model folder>"), (config.model.absolute().parent, "<model folder>")]
    hidden = sorted({(str(f), label) for f, label in folders if len(f.parts) > 1}, key=lambda t: -len(t[0]))

    def error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
        for folder, label in hidden:  # error messages never show the server's folders
            message = message.replace(folder, label)
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate, escaped
        return JSONResponse(json.loads(error_body(status, code, message)), status_code=status, headers=headers)

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError):
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(EdgemakerError)
    async def _edgemaker_error(request: Request, exc: EdgemakerError):
        return error(400, "invalid", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method the path takes, not only the first route's
            headers["Allow"] = ", ".join(contract.allowed_methods(app, request.scope))
        return error(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        if isinstance(exc, BodyRefused):  # the guard answers it (413/408); nothing to log
            return error(400, "body_refused", str(exc))
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, "internal", f"internal error ({type(exc).__name__}); see the server's console")

    def project(name: str) -> Project:
        if store is None:
            raise WebError(404, "no_projects", "this server serves one model (--model); project routes are off")
        return store.get(name)

    def not_while_training(p: Project) -> None:
        if jobs.active_run(p) or jobs.lock_held(p.runs_dir):
            raise WebError(409, "busy", f"project {p.name!r} is training; change its classes after the run")

    # -- info and projects ----------------------------------------------------------------------
    @app.get("/api/v1/info")
    def info() -> dict:
        out = {"version": __version__, "mode": "model" if config.model else "projects",
               "limits": vars(limits),
               "home": config.home.resolve().name if config.home else None}  # its name: the server's path stays private
        if config.model:
            m = models.get(config.model)
            out["model"] = {"file": config.model.name, "labels": m.labels, "modality": m.modality}
        return out

    @app.get("/api/v1/options")
    def train_options(task: str = Query("image", json_schema_extra={"enum": ["image", "audio"]})) -> dict:
        """What the Train page offers for a task: backbones, export formats and the defaults."""
        from ..backbones import list_backbones
        from ..pipeline import AUDIO_ONLY, FORMATS
        from ..devices import DEVICES
        from ..tasks.options import AutoOptions, HParams
        from .worker import web_formats

        if task not in ("image", "audio"):
            raise WebError(400, "invalid_task", "task must be image or audio")
        return {"backbones": [{"name": s.name, "parameters": s.parameters, "feature_dim": s.feature_dim}
                              for s in list_backbones() if s.modality == task and s.name != "base_model"],
                "formats": [f for f in FORMATS if task == "audio" or f not in AUDIO_ONLY],
                "default_formats": list(web_formats()), "defaults": vars(HParams()),
                "auto": {"default_minutes": AutoOptions().budget_s / 60},
                "devices": [d.to_dict() for d in DEVICES.values()]}

    @app.get("/api/v1/projects")
    def list_projects() -> dict:
        return {"projects": store.list() if store else []}

    @app.post("/api/v1/projects", status_code=201, responses=errors(409))
    def create_project(body: NewProject) -> dict:
        if store is None:
            project("")
        return store.create(body.name, body.task).to_dict()

    @app.get("/api/v1/projects/{name}")
    def get_project(name: str) -> dict:
        p = project(name)
        runs = jobs.list_runs(p)  # newest first
        return {**p.to_dict(), "runs": runs, "active_run": next((r for r in runs if r["state"] not in jobs.TERMINAL), None),
                "latest_run": next((r["id"] for r in runs if r["state"] == "done"), None)}

    # -- classes and samples --------------------------------------------------------------------
    @app.post("/api/v1/projects/{name}/classes", status_code=201, responses=errors(409))
    def add_class(name: str, body: ClassName) -> dict:
        p = project(name)
        return {"name": p.add_class(body.name)}

    @app.patch("/api/v1/projects/{name}/classes/{label}", responses=errors(409))
    def rename_class(name: str, label: str, body: ClassName) -> dict:
        p = project(name)
        not_while_training(p)
        return {"name": p.rename_class(label, body.name)}

    @app.delete("/api/v1/projects/{name}/classes/{label}", status_code=204, responses=errors(409))
    def delete_class(name: str, label: str) -> None:
        p = project(name)
        not_while_training(p)
        p.delete_class(label)

    @app.get("/api/v1/projects/{name}/classes/{label}/samples")
    def list_samples(name: str, label: str) -> dict:
        return {"samples": project(name).samples(label)}

    @app.post("/api/v1/projects/{name}/classes/{label}/samples", status_code=201, responses=errors(415),
              openapi_extra=contract.upload_body("files", many=True))
    async def upload_samples(name: str, label: str, request: Request) -> dict:
        """multipart/form-data, one or many `files`; each is checked and written on its own."""
        p = project(name)
        p.class_dir(label)
        contract.require_multipart(request, "files")
        try:
            form = await request.form(max_files=limits.max_files, max_fields=limits.max_files + 10)
        except Exception as exc:  # noqa: BLE001 - the multipart parser's errors, too many files included
            raise WebError(400, "bad_upload", f"cannot read the upload ({exc}); send at most "
                                              f"{limits.max_files} files as multipart/form-data") from None
        added, rejected = [], []
        try:
            contract.check_fields(form, "files")
            for item in form.getlist("files"):
                if isinstance(item, str):
                    continue
                fname = item.filename or "(no name)"
                data = await item.read(limits.max_file_bytes + 1)
                try:
                    if len(data) > limits.max_file_bytes:
                        raise WebError(413, "too_large", f"{fname}: larger than the {limits.max_file_bytes / 2**20:.0f} MiB "
                                                         "per-file limit")
                    await asyncio.to_thread(_check_and_add, p, label, fname, data, added)
                except WebError as exc:
                    rejected.append({"file": fname, "status": exc.status, "code": exc.code, "reason": exc.message})
        finally:
            await form.close()
        if not added:
            if not rejected:
                raise WebError(400, "no_files", "no files in the upload (form field 'files')")
            first = rejected[0]
            raise WebError(first["status"], first["code"],
                           first["reason"] + (f" (and {len(rejected) - 1} more rejected)" if len(rejected) > 1 else ""))
        return {"added": added, "rejected": rejected}

    def _check_and_add(p: Project, label: str, fname: str, data: bytes, added: list) -> None:
        from .projects import safe_filename

        safe_filename(fname, p.task)  # the type first: a clear message before decoding anything
        check_upload(data, p.task, fname)
        added.append(p.add_sample(label, fname, data))

    @app.get("/api/v1/projects/{name}/samples/{label}/{filename}", responses=contract.FILE_RESPONSE)
    def get_sample(name: str, label: str, filename: str):
        path = project(name).sample_path(label, filename)
        return FileResponse(path, headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    @app.delete("/api/v1/projects/{name}/samples/{label}/{filename}", status_code=204, responses=errors(409))
    def delete_sample(name: str, label: str, filename: str) -> None:
        p = project(name)
        not_while_training(p)
        p.delete_sample(label, filename)

    # -- training runs --------------------------------------------------------------------------
    from ..backbones import list_backbones
    from ..pipeline import FORMATS

    from ..strategies import strategy_names

    TrainRequest = contract.train_request_model([s.name for s in list_backbones() if s.name != "base_model"],
                                                list(FORMATS), strategy_names())

    def train(name: str, body: dict) -> dict:
        from ..backbones import get_spec
        from ..pipeline import parse_formats
        from .worker import auto_from_request, device_from_request, options_from_request

        p = project(name)
        request = body.model_dump(exclude_none=True)  # null and absent mean the same: the default
        try:
            options, formats = options_from_request(request)
            auto_from_request(request)
            device_from_request(request)
        except (ValueError, EdgemakerError) as exc:
            raise WebError(400, "invalid_option", f"invalid option: {exc}") from None
        try:  # valid options that do not fit this project's task: a conflict with the project (409)
            parse_formats(formats, p.task)
        except EdgemakerError as exc:
            raise WebError(409, "wrong_task", f"invalid option: {exc}") from None
        if options.model.backbone and get_spec(options.model.backbone).modality != p.task:
            raise WebError(409, "wrong_task", f"invalid option: backbone {options.model.backbone!r} is not for "
                                              f"{p.task} projects")
        p.check_trainable()
        run_id = jobs.start_run(p, request)
        return {"run": run_id}

    train.__annotations__["body"] = TrainRequest  # built here: the backbones registered when the app starts
    app.post("/api/v1/projects/{name}/train", status_code=202, responses=errors(409))(train)

    @app.get("/api/v1/projects/{name}/runs")
    def list_runs(name: str) -> dict:
        return {"runs": jobs.list_runs(project(name))}

    @app.get("/api/v1/projects/{name}/runs/{run_id}")
    def get_run(name: str, run_id: str) -> dict:
        path = jobs.run_dir(project(name), run_id)
        status = jobs.read_status(path)
        out = {"status": status, "request": json.loads((path / "request.json").read_text("utf-8"))}
        if status["state"] == "done":
            out["metrics"] = jobs.read_metrics(path)
            out["files"] = [{"name": f.name, "size_bytes": f.stat().st_size} for f in sorted(path.iterdir())
                            if f.is_file() and not f.is_symlink() and not f.name.startswith(".")
                            and f.name not in INTERNAL_FILES]
        return out

    @app.post("/api/v1/projects/{name}/runs/{run_id}/cancel", status_code=202, responses=errors(409))
    def cancel(name: str, run_id: str) -> dict:
        jobs.cancel_run(jobs.run_dir(project(name), run_id))
        return {"run": run_id, "cancelling": True}

    @app.get("/api/v1/projects/{name}/runs/{run_id}/events", response_class=StreamingResponse,
             responses={200: {"description": "Server-sent events", "content": {"text/event-stream": {"schema": contract.SSE_EVENT}}}})
    async def events(name: str, run_id: str, request: Request):
        """Server-sent events: every progress event of the run, then `end` once it is over."""
        path = jobs.run_dir(project(name), run_id)
        last = request.headers.get("last-event-id", "")
        offset = int(last) if last.isdigit() else 0

        async def stream():
            nonlocal offset
            yield "retry: 1000\n\n"
            while True:
                state = jobs.read_status(path)["state"]
                batch = jobs.read_events(path, offset)
                for offset, event in batch:
                    yield f"id: {offset}\ndata: {json.dumps(event)}\n\n"
                if state in jobs.TERMINAL and not batch:
                    yield f"event: end\ndata: {json.dumps(jobs.read_status(path))}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.3)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/v1/projects/{name}/runs/{run_id}/files/{filename}", responses=contract.FILE_RESPONSE)
    def download(name: str, run_id: str, filename: str):
        path = jobs.run_dir(project(name), run_id)
        target = path / filename
        if (not contract.is_file_name(filename) or filename in INTERNAL_FILES
                or target.is_symlink()
                or not target.is_file() or jobs.read_status(path)["state"] != "done"):
            raise WebError(404, "not_found", f"{filename}: no such file in run {run_id}")
        inline = target.suffix in (".html", ".json", ".txt")
        return FileResponse(target, filename=None if inline else filename,
                            headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/api/v1/projects/{name}/runs/{run_id}/snippets/{filename}")
    def run_snippets(name: str, run_id: str, filename: str, request: Request) -> dict:
        """Code to copy for one model file of a run, generated from the file's own metadata, so it
        feeds the model exactly what `edgemaker predict` does (ONNX Runtime, LiteRT, TFLite Micro, HTTP)."""
        from ..export import snippets

        path = jobs.run_dir(project(name), run_id)
        target = path / filename
        if (not contract.is_file_name(filename)
                or target.suffix.lower() not in (".onnx", ".tflite") or target.is_symlink()
                or not target.is_file() or jobs.read_status(path)["state"] != "done"):
            raise WebError(404, "not_found", f"{filename}: no .onnx or .tflite model of that name in run {run_id}")
        meta = snippets.read_model_metadata(target)
        if meta is None:
            raise WebError(404, "no_metadata", f"{filename}: no edgemaker metadata in the file; re-export it")
        exports = (jobs.read_metrics(path) or {}).get("exports", [])
        arena = next((e.get("arena_bytes") or e.get("peak_ram_bytes") for e in exports if e.get("path") == filename), None)
        c_array = (path / "model_data.h").is_file() and target.suffix.lower() == ".tflite"
        ops = snippets.tflite_ops(target) if c_array else None
        found = snippets.snippets_for(meta, filename, base_url=str(request.base_url).rstrip("/"), project=name,
                                      ops=ops, arena_bytes=arena, c_array=c_array)
        return {"file": filename, "snippets": [s.to_dict() for s in found]}

    add_history_routes(app, project)  # the runs page: /history, /history/compare, /experiments/...

    # -- predictions ----------------------------------------------------------------------------
    @app.post("/api/v1/predict", responses={200: {"model": contract.Prediction}, **errors(409, 415)}, openapi_extra=contract.upload_body(
        "file", types=contract.media_types(models.get(config.model).modality if config.model else None)))
    async def predict(request: Request, project_name: str | None = None, top_k: int = Query(5, ge=1, le=100)) -> dict:
        """Classify one uploaded file (form field `file`) with the served model, or with the latest
        finished run of `?project_name=`. Returns top-k and every class's probability."""
        contract.require_multipart(request, "file")
        if config.model:
            model_path = config.model
        elif project_name:
            model_path = next((m for m in map(_model_of_run, jobs.done_runs(project(project_name))) if m), None)
            if model_path is None:  # the newest complete run with a model serves; one without is passed over
                raise WebError(409, "not_trained", f"project {project_name!r} has no finished run with an ONNX model "
                                                   "yet; train it first")
        else:
            raise WebError(400, "no_model", "give ?project_name=<project> (or start the server with --model)")
        try:
            form = await request.form(max_files=1, max_fields=5)
        except Exception as exc:  # noqa: BLE001
            raise WebError(400, "bad_upload", f"cannot read the upload ({exc}); send one file as form field 'file'") from None
        try:
            contract.check_fields(form, "file")
            item = form.get("file")
            if item is None or isinstance(item, str):
                raise WebError(400, "no_files", "no file in the upload (form field 'file')")
            data = await item.read(limits.max_file_bytes + 1)
            fname = item.filename or "upload"
        finally:
            await form.close()
        if len(data) > limits.max_file_bytes:
            raise WebError(413, "too_large", f"{fname}: larger than the {limits.max_file_bytes / 2**20:.0f} MiB limit")
        try:
            return await asyncio.to_thread(_predict, model_path, fname, data, top_k)
        finally:
            if len(data) >= RELEASE_AFTER_BYTES:  # a large upload's decode leaves freed heap the OS never gets back
                del data
                await asyncio.to_thread(release_memory)  # ~0.1 s after a 100 MB decode: off the event loop

    def _predict(model_path: Path, fname: str, data: bytes, top_k: int) -> dict:
        model = models.get(model_path)
        suffix = Path(fname).suffix.lower() if Path(fname).suffix.lower() in _EXTS else (
            ".png" if model.modality == "image" else ".wav")
        with tempfile.TemporaryDirectory(prefix="edgemaker-predict-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            batcher = models.batcher(model_path, config.batch_window_ms) if config.batch_window_ms > 0 else None
            if batcher is not None:
                batcher.enter()
            try:
                windows = model.prepare(path)
                proba = batcher.predict(windows) if batcher is not None else model.predict_prepared(windows)
            except EdgemakerError as exc:
                raise WebError(415, "bad_content", str(exc).replace(str(path), fname)) from None
            finally:
                if batcher is not None:
                    batcher.leave()
        order = proba.argsort()[::-1]
        return {"model": model_path.name, "file": fname,
                "top": [{"label": model.labels[i], "probability": round(float(proba[i]), 4)} for i in order[:top_k]],
                "probabilities": {label: round(float(p), 4) for label, p in zip(model.labels, proba)}}

    # -- the page -------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = contract.document_errors(FastAPI.openapi(app), predict_project=not config.model)
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(Guard, config=config.security)
    return app
