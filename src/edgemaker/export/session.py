"""Every file of one run, built from one float model: each float source converted once, inputs
decoded once, every int8 file made by the one int8 flow, and the seconds of each step recorded."""

from __future__ import annotations

import time
from pathlib import Path

from .base import Exporter, FloatModel
from .exporters import exporter_for
from .inputs import PreparedInputs
from .int8 import HeadFitter, Validation, build_int8
from .quantization import Quantization


class ExportSession:
    def __init__(self, model: FloatModel, out_dir: str | Path, validation: Validation | None = None,
                 fit_head: HeadFitter | None = None, threads: int | None = None) -> None:
        self.model = model
        self.out_dir = Path(out_dir)
        self.validation = validation
        self.fit_head = fit_head
        self.threads = threads
        self.inputs = PreparedInputs()
        self.int8_choice: dict[str, dict] = {}  # runtime (+ "-nofrontend") -> the int8 head choice record
        self.timings: dict[str, float] = {}  # step -> seconds
        self._float: dict[tuple[str, bool], Path] = {}

    def _timed(self, step: str, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[step] = round(self.timings.get(step, 0.0) + time.perf_counter() - t0, 3)

    def float_file(self, exporter: Exporter, frontend: bool = True) -> Path:
        """The float file of this runtime, converted the first time this export needs it."""
        key = (exporter.runtime, frontend)
        path = self._float.get(key)
        if path is None or not path.is_file():
            path = exporter.path(self.out_dir, "none", frontend)
            self._timed(f"{exporter.runtime}_convert_s", exporter.convert, self.model, frontend, path)
            self._float[key] = path
        return path

    def export(self, runtime: str, quantization: Quantization | None = None, frontend: bool = True,
               int8_aware_head: bool = True) -> Path | None:
        """Write `runtime`'s file for `quantization` (fp32 when None); returns its path, or None when
        the int8 file was refused (`int8_choice[...]["refused"]` says why)."""
        quantization = quantization or Quantization.none()
        exporter = exporter_for(runtime)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        source = self.float_file(exporter, frontend)
        if quantization.kind == "none":
            return source
        target = exporter.path(self.out_dir, quantization.kind, frontend)
        if quantization.kind != "int8":
            self._timed(f"{runtime}_quantize_s", exporter.quantize, source, target, quantization, (),
                        self.model.metadata(quantization.kind, frontend))
            return target
        calibration = self._timed("calibration_inputs_s", self.inputs.calibration, quantization,
                                  self.model.metadata("none", frontend))
        choice = self._timed(f"{runtime}_int8_s", build_int8, exporter, self.model, frontend, source, target,
                             quantization, calibration, self.inputs, self.validation if int8_aware_head else None,
                             self.fit_head, self.threads)
        if choice:
            self.int8_choice[runtime + ("" if frontend else "-nofrontend")] = choice
        return None if choice.get("refused") else target
