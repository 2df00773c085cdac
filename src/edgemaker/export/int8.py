"""The int8 flow, written once for every runtime: quantize (by each route variant the runtime
offers, keeping the one closest to the float model on validation), check on validation, and only if
the int8 file lost accuracy there, fit a head on the int8 backbone's own embeddings and keep the better.

Post-training quantization moves the backbone's embeddings a little; a float head can then flip
borderline samples. The int8-aware head is fitted on the embeddings of the int8 backbone that will
be deployed (read from the quantized file itself, so no second quantization of the backbone). It
does not win everywhere (measured: on caltech-dev10 and ESC-10 the plain file matched fp32 and the
aware head lost a sample), and fitting it means embedding every training view again, so it is built
only when the plain file really departs from the float model on validation: it loses more than a
point and an exact McNemar test says the loss is not noise (on 237 photos, 3 flipped samples are not
evidence), or it surely disagrees with the float model on more than 5% of the samples (the 95%
interval of the disagreement above 5%; measured on tiny upscaled 8x8 digits: 15% disagreement at
equal accuracy). It is kept only when it scores strictly
better than the plain file there. An int8 file is refused, with the reason, rather than shipped when
its int8 network surely disagrees with the float one on more than 10% of validation (one flip in
six samples is not evidence): no head can be trusted to repair that. A smaller loss that remains is reported on the test split like any other.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluate.metrics import Evaluation, evaluate_predictions, paired_loss, proportion_interval
from .base import Exporter, FloatModel, Int8Backbone, LinearHead
from .inputs import PreparedInputs
from .quantization import Quantization

# (int8 backbone, a tag naming it for the feature cache) -> a head fitted on its embeddings
HeadFitter = Callable[[Int8Backbone, str], LinearHead]
REAL_LOSS = (0.01, 0.05)  # an int8 file loses accuracy when it is more than a point below, at McNemar p < 0.05
MIN_AGREEMENT = 0.95  # ... or when it surely answers differently from the float model on more than 5% of validation
# Below this the int8 backbone does not compute what the float one does, and a head fitted on it cannot
# be trusted: measured on 8x8 digits upscaled for Lite0 (8% agreement), the int8-aware head matched
# the float model on validation (0.567 vs 0.583; its early stopping had seen that split) and lost 12
# points on test. Such a file is refused with the reason.
MIN_SHIPPABLE_AGREEMENT = 0.90


@dataclass(frozen=True)
class Validation:
    """The validation split and the float model's probabilities on it (one row per file)."""

    paths: Sequence[Path]
    labels: Sequence[str]
    float_proba: np.ndarray
    # When the shipped head was fitted on these samples too (`edgemaker train` refits the cross-validated
    # head on train + val), the float model is near certain on them and every int8 file "agrees" with it:
    # measured on caltech-hard40, 100% validation agreement for an ONNX int8 file that agreed on 96.6% of
    # test. The checks then score the int8 backbone through this head instead, fitted with the same
    # settings on train only: (the head, with predict_proba; the float backbone's probabilities through it).
    check_head: tuple[object, np.ndarray] | None = None

    def held_out(self, metadata: dict) -> bool:
        """Whether the checks go through the check head (files fed like the float backbone: images,
        waveform windows; a log-mel input file is scored with its own head)."""
        return self.check_head is not None and metadata["input"]["kind"] != "logmel"

    def score(self, model, inputs: PreparedInputs) -> Evaluation:
        """A loaded file (ModelFile) on the validation split, inputs decoded once per run."""
        windows = inputs.files(self.paths, model.metadata)
        proba = np.stack([model.predict_prepared(w) for w in windows]) if windows else np.zeros((0, len(model.labels)))
        return evaluate_predictions(model.labels, list(self.labels), proba)

    def score_int8(self, exporter: Exporter, path: Path, meta: dict, inputs: PreparedInputs, classes: Sequence[str],
                   threads: int | None) -> Evaluation:
        """An int8 file on the validation split: through its own head, or through the check head."""
        if not self.held_out(meta):
            return self.score(exporter.load(path, threads), inputs)
        head = self.check_head[0]
        backbone = exporter.int8_backbone(path, meta, threads)
        rows = [head.predict_proba(backbone.embed(w)).mean(axis=0) for w in inputs.files(self.paths, meta)]
        proba = np.stack(rows) if rows else np.zeros((0, len(classes)))
        return evaluate_predictions(list(classes), list(self.labels), proba)

    def float_eval(self, classes: Sequence[str], meta: dict | None = None) -> Evaluation:
        proba = self.check_head[1] if meta is not None and self.held_out(meta) else self.float_proba
        return evaluate_predictions(list(classes), list(self.labels), proba)


def int8_digest(exporter: Exporter, spec_id: str, quantization: Quantization, frontend: bool,
                route: dict | None = None) -> str:
    """Names the int8 backbone: same weights, calibration, route and runtime -> same embeddings."""
    key = "\n".join(str(p) for p in quantization.calibration_files()) + repr(
        (spec_id, quantization.max_samples, quantization.ranges, quantization.per_channel, frontend, exporter.runtime,
         exporter.route_id)) + (repr(sorted(route.items())) if route else "")
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def choose_route(exporter: Exporter, model: FloatModel, float_file: Path, target: Path, quantization: Quantization,
                 calibration: Sequence[np.ndarray], meta: dict, inputs: PreparedInputs, validation: Validation,
                 threads: int | None = None) -> tuple[dict, dict, Evaluation]:
    """Quantize by each of the exporter's route variants, score each file on validation against the
    float model, keep the best at `target`: most samples answered as the float model does, then the
    most right, then the closest probabilities (mean total-variation distance to float, sample level),
    then the earlier variant; a variant that answers as the float model on every validation sample ends
    the search (the later ones are not built). Test never takes part. Returns (the kept route, the
    record, its evaluation)."""
    float_eval = validation.float_eval(model.classes, meta)
    scored = []
    asides = [target.with_name(f".{target.stem}-route{i}{target.suffix}") for i in range(len(exporter.int8_routes))]
    try:
        for i, (name, route) in enumerate(exporter.int8_routes):
            path = target if i == 0 else asides[i]
            t0 = time.perf_counter()
            exporter.quantize_route(route, float_file, path, quantization, calibration, meta)
            ev = validation.score_int8(exporter, path, meta, inputs, model.classes, threads)
            seconds = time.perf_counter() - t0  # quantize (the first variant calibrates) + validation
            error = float(np.abs(ev.probabilities - float_eval.probabilities).sum(axis=1).mean() / 2)
            scored.append({"name": name, "route": route, "path": path, "val_accuracy": round(ev.accuracy, 4),
                           "val_agreement": round(ev.agreement(float_eval), 4),
                           "val_probability_error": round(error, 5), "seconds": round(seconds, 1),
                           "_eval": ev, "_key": (ev.agreement(float_eval), ev.accuracy, -error, -i)})
            if ev.agreement(float_eval) == 1.0:  # nothing left to win but the probability error: stop
                break
        best = max(scored, key=lambda r: r["_key"])
        if best["path"] != target:
            exporter.replace(best["path"], target)
    finally:
        for path in asides[1:]:
            exporter.remove(path)
    record = {"chosen": best["name"], "candidates": [
        {k: v for k, v in r.items() if k not in ("path", "_key", "_eval", "route")} for r in scored]}
    if len(scored) < len(exporter.int8_routes):
        record["not_tried"] = [name for name, _ in exporter.int8_routes[len(scored):]]
    return best["route"], record, best["_eval"]


def build_int8(exporter: Exporter, model: FloatModel, frontend: bool, float_file: Path, target: Path,
               quantization: Quantization, calibration: Sequence[np.ndarray], inputs: PreparedInputs,
               validation: Validation | None = None, fit_head: HeadFitter | None = None,
               threads: int | None = None) -> dict:
    """Write the int8 file at `target`; returns the choice record for metrics.json ({} without validation).
    When the record has "refused", no file was left at `target`."""
    meta = model.metadata("int8", frontend)
    plain_meta = {**meta, "head": "float head, quantized"}
    if validation is None or not len(validation.paths):
        exporter.quantize_route(exporter.int8_routes[0][1], float_file, target, quantization, calibration, plain_meta)
        return {}
    route, route_record, plain_eval = choose_route(exporter, model, float_file, target, quantization, calibration,
                                                   plain_meta, inputs, validation, threads)
    float_eval = validation.float_eval(model.classes, meta)
    plain, vs, agreement = plain_eval.accuracy, paired_loss(float_eval, plain_eval), plain_eval.agreement(float_eval)
    record = {"float_val_accuracy": round(float_eval.accuracy, 4), "plain_val_accuracy": round(plain, 4),
              "plain_val_agreement": round(agreement, 4), "plain_vs_float": vs.to_dict(),
              "int8_aware_val_accuracy": None, "kept": "plain"}
    if len(exporter.int8_routes) > 1:
        record["route"] = route_record
    # Disagreement counts only when it is sure to exceed the bound (95% interval), not one flip in 6.
    n = len(validation.paths)
    surely_disagrees = proportion_interval(round((1 - agreement) * n), n)[0]
    if not _real_loss(vs) and surely_disagrees <= 1 - MIN_AGREEMENT:
        record["why"] = (f"the plain int8 file loses no real accuracy on validation ({vs.lost} samples right only "
                         f"in float, {vs.gained} only in int8, McNemar p = {vs.p_value:.2f}; agrees on "
                         f"{agreement:.1%})")
        return record
    if surely_disagrees > 1 - MIN_SHIPPABLE_AGREEMENT:
        return _refuse(exporter, target, record,
                       f"its int8 network answers differently from the float model on {1 - agreement:.0%} of the "
                       f"{len(validation.paths)} validation samples (int8 {plain:.3f} vs float {float_eval.accuracy:.3f})")
    if fit_head is None:
        record["why"] = "no training data to fit an int8-aware head"
    else:
        digest = int8_digest(exporter, model.spec.cache_id, quantization, frontend, route)
        head = fit_head(exporter.int8_backbone(target, meta, threads), digest)
        aware = target.with_name(f".{target.stem}-int8-aware{target.suffix}")
        try:
            exporter.int8_with_head(model.with_head(head), frontend, float_file, target, aware, quantization,
                                    calibration, {**meta, "head": "fitted on the int8 backbone's embeddings"})
            aware_eval = validation.score(exporter.load(aware, threads), inputs)
            record["int8_aware_val_accuracy"] = round(aware_eval.accuracy, 4)
            if aware_eval.accuracy > plain:
                record["kept"] = "int8-aware head"
                record["why"] = "the head fitted on the int8 backbone scores higher on validation"
                exporter.replace(aware, target)
            else:
                record["why"] = "the int8-aware head did not score higher on validation (ties keep the plain file)"
        finally:
            exporter.remove(aware)
    return record


def _real_loss(vs) -> bool:
    return vs.loss > REAL_LOSS[0] and vs.p_value < REAL_LOSS[1]


def _refuse(exporter: Exporter, target: Path, record: dict, what: str) -> dict:
    exporter.remove(target)
    record["kept"] = None
    record["refused"] = record["why"] = (
        f"{what}: int8 does not suit these inputs with this backbone; use the fp32 or fp16 file, or a network "
        "made for small inputs (--backbone small_cnn)")
    return record
