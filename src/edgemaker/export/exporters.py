"""The exporter of each runtime, by name (imported lazily: LiteRT's converter takes seconds to import)."""

from __future__ import annotations

from .base import Exporter


def exporter_for(runtime: str) -> Exporter:
    if runtime == "onnx":
        from .onnx_model import OnnxExporter

        return OnnxExporter()
    if runtime == "tflite":
        from .tflite import TFLiteExporter, require_tflite

        require_tflite()
        return TFLiteExporter()
    raise ValueError(f"unknown runtime {runtime!r}")
