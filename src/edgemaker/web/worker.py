"""The training worker: `python -m edgemaker.web.worker RUN_DIR`. Runs the same `train_run` as the
CLI on the project's data folder and reports through events.jsonl and status.json (see jobs.py)."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from ..atomic import write_json
from ..errors import EdgemakerError
from .jobs import LOCK_NAME

# The web defaults: every file the export page offers. Sounds also get their front-end-less ONNX.
WEB_FORMATS = ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8", "c-array")
_HPARAM_FIELDS = ("epochs", "batch_size", "learning_rate", "dropout")


def settings_from_request(request: dict) -> dict:
    """The request's options as `edgemaker train` settings (run_settings.py); ValueError on bad values."""
    from ..backbones import get_spec

    opts = request.get("options") or {}
    if not isinstance(opts, dict):
        raise ValueError("options must be an object")
    unknown = set(opts) - {*_HPARAM_FIELDS, "backbone", "augment", "seed", "auto_minutes", "fine_tune", "device",
                           "strategy"}
    if unknown:
        raise ValueError(f"unknown option {sorted(unknown)[0]!r}")
    settings = {k: opts[k] for k in _HPARAM_FIELDS if opts.get(k) is not None}
    for k in ("epochs", "batch_size"):
        if k in settings:
            settings[k] = int(settings[k])
    for k in ("learning_rate", "dropout"):
        if k in settings:
            settings[k] = float(settings[k])
    settings["seed"] = int(opts.get("seed", 0))
    backbone = opts.get("backbone") or None
    if backbone is not None:
        get_spec(str(backbone))
        settings["backbone"] = str(backbone)
    # augment: true/false forces the views on/off; absent or null lets head selection choose on validation.
    augment = opts.get("augment")
    if augment not in (None, True, False):
        raise ValueError("augment must be true, false or null (chosen on validation)")
    settings["augment"] = augment
    # fine_tune: 0 (head only, the default), a number of last blocks, or "auto" (chosen on validation).
    fine_tune = opts.get("fine_tune")
    if not (fine_tune in (None, "auto") or (isinstance(fine_tune, int) and not isinstance(fine_tune, bool))):
        raise ValueError("fine_tune must be a number of blocks (0, 1, 2, 3) or \"auto\"")
    settings["fine_tune"] = fine_tune
    auto = auto_from_request(request)
    if auto is not None:
        settings.update(auto=True, budget=auto.budget_s)
    settings["max_flash"], settings["max_ram"] = device_from_request(request)
    engine = server_engine()
    settings.update(engine=engine.kind, ray_address=engine.address)
    settings["formats"] = list(request.get("formats") or list(web_formats()))
    settings["strategy"] = opts.get("strategy") or None
    return settings


def config_from_request(request: dict, data="", out="", task: str | None = None):
    """The RunConfig of a train request, through the same translator as the CLI's flags."""
    from ..run_settings import config_from_settings

    return config_from_settings(data, out, task=task, **settings_from_request(request))


def options_from_request(request: dict):
    """(ClassifierOptions, formats) from a train request; ValueError/EdgemakerError on bad values."""
    config = config_from_request(request)
    return config.options, config.export.formats


def server_engine():
    """`edgemaker serve --ray-address ADDR` runs validation and extraction on that cluster."""
    import os

    from ..tasks.options import EngineOptions

    address = os.environ.get("EDGEMAKER_RAY_ADDRESS")
    return EngineOptions("ray", address) if address else EngineOptions()


def auto_from_request(request: dict):
    """AutoOptions when the request asks for "automatic (N minutes)" (`options.auto_minutes`), else None."""
    from ..tasks.options import AutoOptions

    minutes = (request.get("options") or {}).get("auto_minutes")
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes <= 24 * 60:
        raise ValueError("auto_minutes must be a number of minutes within 0..1440")
    return AutoOptions(budget_s=60.0 * minutes)


def device_from_request(request: dict) -> tuple[int | None, int | None]:
    """(max flash, max RAM) of the device preset the request names (`options.device`), else (None, None)."""
    from ..devices import limits

    device = (request.get("options") or {}).get("device")
    if device is None or device == "":
        return None, None
    if not isinstance(device, str):
        raise ValueError("device must be the name of a device preset (GET /api/v1/options lists them)")
    return limits(device, None, None)


def web_formats() -> tuple[str, ...]:
    """WEB_FORMATS, less the TFLite ones where the tflite extra is not installed (looked up, not
    imported: the converter takes seconds to import)."""
    from importlib.util import find_spec

    if all(find_spec(m) for m in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")):
        return WEB_FORMATS
    return tuple(f for f in WEB_FORMATS if f.startswith("onnx"))


def private(text: str, project_root: Path) -> str:
    """`text` with the server's folders taken out: the project's path becomes relative, home is `~`."""
    for folder, shown in ((str(project_root) + os.sep, ""), (str(project_root), "."), (str(Path.home()), "~")):
        text = text.replace(folder, shown).replace(json.dumps(folder)[1:-1], shown)
    return text


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def main(run_dir: Path) -> int:
    from ..pipeline import train_run
    from ..progress import EventProgress

    run_dir = run_dir.resolve()
    project_root = run_dir.parent.parent
    # The run reads `data` and writes `runs/<id>` relative to the project, so every record it writes
    # (metrics.json, split.json, report.html, log lines, errors) names paths inside the project only.
    os.chdir(project_root)
    lock = open(run_dir.parent / LOCK_NAME, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        write_json(run_dir / "status.json", {"state": "failed", "error": "another run of this project is training",
                                             "finished": _now()})
        return 1
    status = json.loads((run_dir / "status.json").read_text("utf-8"))
    if status.get("state") == "cancelled":
        return 0
    request = json.loads((run_dir / "request.json").read_text("utf-8"))
    status = {"state": "running", "pid": os.getpid(), "started": _now(), "created": status.get("created")}
    write_json(run_dir / "status.json", status)

    events = open(run_dir / "events.jsonl", "ab", buffering=0)
    write_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while the main thread holds it

    def emit(event: dict) -> None:
        line = private(json.dumps(event, default=str), project_root).encode() + b"\n"
        with write_lock:
            events.write(line)

    def finish(state: str, **extra) -> None:
        extra = {k: private(v, project_root) if isinstance(v, str) else v for k, v in extra.items()}
        write_json(run_dir / "status.json", {**status, "state": state, "finished": _now(), **extra})
        emit({"type": "state", "state": state, **extra})

    def on_term(signum, frame) -> None:  # cancel: record it, then stop at once (partial files are never trusted)
        finish("cancelled")
        fcntl.flock(lock, fcntl.LOCK_UN)
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    emit({"type": "state", "state": "running"})
    try:
        task = json.loads((project_root / "project.json").read_text("utf-8"))["task"]
        train_run(config_from_request(request, Path("data"), Path("runs") / run_dir.name, task), EventProgress(emit))
    except (EdgemakerError, ValueError) as exc:
        finish("failed", error=str(exc))
        code = 1
    except Exception as exc:  # noqa: BLE001 - reported to the page in one line, details in worker.log
        traceback.print_exc()
        finish("failed", error=f"internal error: {type(exc).__name__}: {exc}")
        code = 1
    else:
        finish("done")
        code = 0
    fcntl.flock(lock, fcntl.LOCK_UN)  # at once: interpreter shutdown may take a while
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
