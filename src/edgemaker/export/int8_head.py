"""A head trained for the int8 network it will run on.

Post-training quantization changes the backbone's embeddings a little; a float head can then flip
borderline samples. So: quantize the backbone alone (calibrated on the training files), embed the
training data with that int8 backbone, fit the head on those embeddings, and quantize the whole
model with the same calibration: the deployed int8 backbone is the one the head was fitted on.
Neither route wins everywhere (measured: on caltech-dev10 and ESC-10 the plain route matched fp32
and the int8-aware head lost a test sample), so the ONNX and TFLite int8 exports alike build both
and keep the one that scores better on the validation split (`keep_better_on_validation`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from .quantization import Quantization


def calibration_digest(quantization: Quantization, frontend: bool, runtime: str) -> str:
    key = "\n".join(str(p) for p in quantization.calibration_files()) + repr((quantization.max_samples, quantization.ranges, frontend, runtime))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def keep_better_on_validation(clf, target: Path, candidate: Path, runtime: str) -> bool:
    """Evaluate both int8 files on clf's validation split with their own runtime; `candidate`
    (the int8-aware head) replaces `target` (plain post-training) only when strictly better. The
    scores go to `clf.int8_head_choice[runtime]` for metrics.json."""
    from ..evaluate.metrics import evaluate_predictions
    from .runtime import load_exported

    paths, labels = [s.path for s in clf.val_samples], [s.label for s in clf.val_samples]
    scores = []
    for path in (target, candidate):
        model = load_exported(path, clf.options.threads)
        scores.append(evaluate_predictions(model.labels, labels, model.predict_files(paths)).accuracy)
    better = scores[1] > scores[0]
    clf.int8_head_choice[runtime] = {"plain_val_accuracy": round(scores[0], 4),
                                     "int8_aware_val_accuracy": round(scores[1], 4),
                                     "kept": "int8-aware head" if better else "plain"}
    if better:
        candidate.replace(target)
    return better


def fit_int8_head(clf, int8_backbone, digest: str):
    """Fit a head on `int8_backbone.embed` (any object with that method) for clf's training data."""
    from ..tasks.classifier import fit_head

    class Named:  # the cache keys embeddings by spec.cache_id: an int8 backbone is another backbone
        spec = dataclasses.replace(clf.spec, name=f"{clf.spec.name}-int8-{digest}")

        def embed(self, batch: np.ndarray) -> np.ndarray:
            return int8_backbone.embed(batch)

    return fit_head(Named(), clf.train_samples, clf.val_samples, clf.options, clf.cache, clf.progress, "int8 backbone")


class OnnxBackbone:
    """A (quantized) ONNX backbone graph behind `embed(batch) -> (N, dim)`, fed like the float one."""

    def __init__(self, path: Path, metadata: dict, threads: int | None = None) -> None:
        from ..backbones.runtime import OUTPUT_NAME, make_session

        self._session = make_session(path, threads)
        self._meta = metadata
        self._output = OUTPUT_NAME

    def embed(self, batch: np.ndarray) -> np.ndarray:
        spec = self._meta["input"]
        if spec["kind"] == "logmel":
            from ..backbones.audio_backbones import FRONTENDS

            batch = FRONTENDS[self._meta["backbone"]].compute(batch.astype(np.float32))
        return self._session.run([self._output], {spec["name"]: np.ascontiguousarray(batch)})[0].astype(np.float32)
