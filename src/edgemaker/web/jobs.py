"""Training runs in a worker process, so they outlive the browser tab and a crash cannot take the
server down. A run is a folder under the project's runs/:

    request.json   what to train (options, formats), written before the worker starts
    status.json    queued | running | done | failed | cancelled (atomic writes; the worker's)
    events.jsonl   progress events, one JSON object a line, appended as they happen
    worker.log     the worker's own output, for debugging
    ...            the run's artifacts (models, metrics.json, report.html)

Only a run whose status says `done` and that has its metrics.json is shown as a result (a done run
missing it reads as `failed`): a killed worker leaves `running` with its lock released, which reads
as `interrupted`. One run at a time per project, across processes
(an flock on runs/.train.lock held by the worker).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..atomic import write_json
from .projects import Project, WebError

TERMINAL = ("done", "failed", "cancelled", "interrupted")
LOCK_NAME = ".train.lock"
_RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
_START_LOCK = threading.Lock()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def lock_held(runs_dir: Path) -> bool:
    """True while some worker (in any process) holds the project's training lock."""
    path = runs_dir / LOCK_NAME
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def run_dir(project: Project, run_id: str) -> Path:
    if not _RUN_ID.fullmatch(run_id or ""):
        raise WebError(400, "invalid_name", f"{run_id!r}: not a run id")
    path = project.runs_dir / run_id
    if not (path / "request.json").is_file():
        raise WebError(404, "not_found", f"run {run_id} not found in project {project.name!r}")
    return path


def read_status(path: Path) -> dict:
    """The run's status, with a dead worker's `running` reported as `interrupted`."""
    try:
        status = json.loads((path / "status.json").read_text("utf-8"))
    except (OSError, ValueError):
        status = {"state": "queued"}
    status["id"] = path.name
    if status["state"] == "done" and not (path / "metrics.json").is_file():  # its files lost after the run
        status.update(state="failed", error="the run's metrics.json is missing; train again")
    if status["state"] not in TERMINAL and not lock_held(path.parent):
        # Queued counts as alive for a short grace period while the worker starts and takes the lock.
        started = path.stat().st_mtime
        if status["state"] == "running" or dt.datetime.now().timestamp() - started > 60:
            status["state"] = "interrupted"
    return status


def list_runs(project: Project) -> list[dict]:
    if not project.runs_dir.is_dir():
        return []
    runs = [read_status(p) for p in sorted(project.runs_dir.iterdir(), reverse=True)
            if _RUN_ID.match(p.name) and (p / "request.json").is_file()]
    return runs


def active_run(project: Project) -> dict | None:
    return next((r for r in list_runs(project) if r["state"] not in TERMINAL), None)


def read_metrics(path: Path) -> dict | None:
    """The run's metrics.json, or None when it is missing or not a JSON object."""
    try:
        metrics = json.loads((path / "metrics.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def done_runs(project: Project):
    """The project's complete runs, newest first."""
    return (project.runs_dir / r["id"] for r in list_runs(project) if r["state"] == "done")


def latest_done(project: Project) -> Path | None:
    return next(done_runs(project), None)


def start_run(project: Project, request: dict) -> str:
    """Write the run folder and start its worker; refuses while another run holds the project
    (two tabs clicking Train at once: one starts, the other gets 409)."""
    with _START_LOCK:
        return _start_run(project, request)


def _start_run(project: Project, request: dict) -> str:
    busy = WebError(409, "busy", f"project {project.name!r} is already training; wait for it or cancel it")
    if active_run(project):
        raise busy
    # A worker that has just written its final status may still be exiting with the lock: give it a moment.
    deadline = time.monotonic() + 5
    while lock_held(project.runs_dir):
        if time.monotonic() > deadline:
            raise busy
        time.sleep(0.1)
    project.runs_dir.mkdir(exist_ok=True)
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    path = project.runs_dir / run_id
    path.mkdir()
    write_json(path / "status.json", {"state": "queued", "created": _now()})
    write_json(path / "request.json", request)
    with open(path / "worker.log", "ab") as log:
        # A session of its own: the worker survives the server's Ctrl-C and keeps the run going.
        worker = subprocess.Popen([sys.executable, "-m", "edgemaker.web.worker", str(path.resolve())], stdout=log,
                                  stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, cwd=project.root)
    # Reaped when it exits, so no finished worker lingers as <defunct> until the next run.
    threading.Thread(target=worker.wait, name=f"edgemaker-reap-{worker.pid}", daemon=True).start()
    return run_id


def cancel_run(path: Path) -> dict:
    status = read_status(path)
    if status["state"] in TERMINAL:
        raise WebError(409, "not_running", f"run {path.name} is already {status['state']}")
    pid = status.get("pid")
    if pid and lock_held(path.parent):
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass
    else:  # not started yet: mark it so the worker, when it starts, gives up at once
        write_json(path / "status.json", {**status, "state": "cancelled", "finished": _now()})
    return status


def read_events(path: Path, offset: int = 0) -> list[tuple[int, dict]]:
    """Complete event lines after byte `offset`, each with the offset just after it (its SSE id)."""
    try:
        with open(path / "events.jsonl", "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return []
    out = []
    for line in chunk.splitlines(keepends=True):
        if not line.endswith(b"\n"):  # a line still being written waits for the next read
            break
        offset += len(line)
        try:
            out.append((offset, json.loads(line)))
        except ValueError:
            continue
    return out
