"""One training run, folder in -> run folder out. The CLI and the web app are thin layers over it.

validate -> split -> strategy.fit (-> refiners) -> evaluate -> export stage -> report; each step
lives in its own module, and the run request is one RunConfig (config.py), saved as config.json.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import remove_stale, write_json, write_text
from .config import ExportOptions, RunConfig
from .data.splits import Splits, make_splits
from .data.validate import ValidationReport, validate_folder
from .errors import EdgemakerError
from .evaluate.label_issues import for_run
from .evaluate.metrics import Evaluation
from .export.stage import (AUDIO_ONLY, DEFAULT_FORMATS, FORMATS, check_budgets, evaluate_files, export_stage,
                           export_warnings, parse_formats)
from .heads.cv import CVSelection
from .heads.probe import ProbeHead
from .heads.selection import HeadSelection
from .progress import Progress, SilentProgress
from .strategies import FitContext, get_refiner, get_strategy
from .tasks.classifier import Classifier, classifier_for

__all__ = ["AUDIO_ONLY", "DEFAULT_FORMATS", "FORMATS", "RunConfig", "evaluate_files", "parse_formats", "train_run"]


def train_run(config, *args, progress: Progress | None = None, **legacy) -> dict:
    """Validate, split, train, evaluate, export and report one RunConfig. Returns metrics.json's content.

    `train_run(data_dir, out_dir, options, split, formats, progress, task, max_flash, max_ram, auto,
    distill)` (the earlier call) builds the RunConfig with RunConfig.create and runs the same path."""
    if not isinstance(config, RunConfig):
        names = ("out_dir", "options", "split", "formats", "progress", "task", "max_flash", "max_ram", "auto", "distill")
        given = {**dict(zip(names, args)), **legacy}
        progress = given.pop("progress", progress)
        config = RunConfig.create(config, given.pop("out_dir"), **given)
    elif args:
        progress = args[0]
    return _run(config, progress or SilentProgress())


def _run(config: RunConfig, progress: Progress) -> dict:
    from .data.sources import data_root

    data_dir, out_dir = data_root(config.data.folder), Path(config.out)  # a Path, or a RemotePath for a URL
    options, formats = config.options, parse_formats(config.export.formats)
    strategy = get_strategy(config.search.strategy)
    _check_out_dir(data_dir, out_dir)
    base = options.model.base_model
    if base is not None and not Path(base).expanduser().is_file():  # before any heavy work
        raise EdgemakerError(f"{base}: --base-model file not found")
    start = time.perf_counter()
    cache = Classifier.open_cache(options)
    try:
        report = validate_folder(data_dir, cache=cache, progress=progress, modality=config.data.task,
                                 engine=_engine(options))
        splits = make_splits(report, config.split)
        for line in report.summary_lines():
            progress.log(line)
        data_warnings = splits.tiny_class_warnings(report.modality)
        for w in data_warnings:
            progress.log(f"WARNING: {w}")
        t_validate = time.perf_counter() - start
        ctx = FitContext(report.modality, classifier_for(report.modality), progress, cache, _engine(options), start,
                         len(splits.test), options, parse_formats(formats, report.modality))
        clf = strategy.fit(splits, config, ctx)
        if config.search.distill:
            clf = get_refiner("distill").refine(clf, splits, config, ctx)
        _log_training(clf, progress)
        t0 = time.perf_counter()
        val_eval, test_eval = clf.evaluate(splits.val), clf.evaluate(splits.test)
        if clf.fine_tune:
            _fine_tune_test(clf, test_eval, splits, progress)
        t_eval = time.perf_counter() - t0
        progress.log(f"test accuracy (float model): {test_eval.accuracy:.4f}")
        explanations = _explain(clf, splits, test_eval, progress)
        label_issues = for_run(clf, report._rel, progress)  # evaluate/label_issues.py; never fails a run
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale(out_dir)  # a killed earlier run's temporary files
        session = clf.export_session(out_dir)
        result = export_stage(session, ctx.formats, splits, report.modality, test_eval, data_dir.resolve().name,
                              ctx.options.threads, progress)
    finally:
        cache.close()

    warnings = export_warnings(result, test_eval, report.modality)
    for w in warnings:
        progress.log(f"WARNING: {w}")
    warnings = data_warnings + warnings
    timings = {"validate_s": t_validate, "extract_s": clf.timings["extract_s"], "train_s": clf.timings["train_s"],
               **({"fine_tune_s": clf.timings["fine_tune_s"]} if "fine_tune_s" in clf.timings else {}),
               "evaluate_s": t_eval, "gradcam_s": explanations.seconds,
               "label_issues_s": label_issues.seconds, "export_s": result.seconds,
               "total_s": time.perf_counter() - start}
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings["export_steps"] = dict(session.timings)
    metrics = _metrics(report, splits, clf, val_eval, test_eval, result.exports, warnings, timings,
                       session.int8_choice, result.refused)
    write_text(out_dir / "labels.txt", "\n".join(clf.classes) + "\n")
    write_json(out_dir / "split.json", _split_record(report, splits))
    saved = RunConfig(config.data, config.out, config.split, config.options, config.search,
                      ExportOptions(ctx.formats))
    write_json(out_dir / "config.json", {**saved.to_dict(), "task": report.modality, "formats": list(ctx.formats)})
    budget = config.search.budget
    problems = check_budgets(result.exports, budget.max_flash, budget.max_ram)
    for hook in ctx.after_export:
        hook(result.exports, out_dir)
    metrics.update({key: record.to_dict() for key, record in ctx.records.items()})
    metrics["budget"] = {"max_flash_bytes": budget.max_flash, "max_ram_bytes": budget.max_ram, "problems": problems}
    metrics["explanations"] = explanations.to_dict()
    metrics["label_issues"] = label_issues.to_dict()
    write_json(out_dir / "metrics.json", metrics)
    from .evaluate.report import write_report

    write_report(out_dir / "report.html", metrics, splits, test_eval, explanations=explanations.overlays())
    if problems:
        raise EdgemakerError(problems[0])
    return metrics


def _check_out_dir(data_dir: Path, out_dir: Path) -> None:
    data, out = data_dir.resolve(), out_dir.resolve()
    if out == data or data in out.parents:
        raise EdgemakerError(f"{out_dir}: the output folder is inside the data folder {data_dir}; "
                             "choose --out outside it (your data folder is never written to)")
    if out.exists() and not out.is_dir():
        raise EdgemakerError(f"{out_dir}: exists and is not a folder; choose another --out")


def _log_training(clf, progress: Progress) -> None:
    if clf.selection:
        by_cv = all("cv_mean" in v for v in clf.selection.values())
        progress.log(f"backbones by {'cross-validated' if by_cv else 'validation'} accuracy: " + ", ".join(
            f"{name} {v['cv_mean' if by_cv else 'val_accuracy']:.3f}" for name, v in clf.selection.items())
            + f"; chose {clf.spec.name}")
    head = clf.head
    if isinstance(head, ProbeHead):
        progress.log(f"trained: logistic-regression probe, C {head.C:g} (one convex fit, no epochs)")
    elif head.best_epoch_ < len(head.history_):
        progress.log(f"trained: best epoch {head.best_epoch_} of {len(head.history_)} run (early stopping)")
    else:
        progress.log(f"trained: {len(head.history_)} epochs")


def _engine(options):
    """The Ray engine when asked for (features/engines.py); None: validation in threads here."""
    if options.engine.kind == "local":
        return None
    from .features.engines import engine_for

    return engine_for(options.engine)


def _explain(clf: Classifier, splits: Splits, test_eval: Evaluation, progress: Progress):
    """Grad-CAM of the misclassified test images for the report (evaluate/gradcam.py); never fails a run."""
    from .evaluate.gradcam import Explanations, explain_misclassified

    try:
        out = explain_misclassified(clf, splits.test, test_eval)
    except Exception as exc:  # noqa: BLE001 - an explanation must never cost the user the trained model
        out = Explanations(skipped=f"Grad-CAM failed ({type(exc).__name__}: {exc})",
                           total_wrong=int((test_eval.y_pred != test_eval.y_true).sum()))
    if out.items:
        progress.log(f"Grad-CAM: {len(out.items)} misclassified test images explained ({out.seconds:.1f} s)")
    return out


def _fine_tune_test(clf: Classifier, test_eval: Evaluation, splits: Splits, progress: Progress) -> None:
    """Head-only vs fine-tuned test accuracy for the report (the head-only model's embeddings are cached)."""
    head_only = clf.head_only if clf.head_only is not None else clf
    before = test_eval if head_only is clf else head_only.evaluate(splits.test)
    clf.fine_tune["head_only"]["test_accuracy"] = round(before.accuracy, 4)
    clf.fine_tune["fine_tuned"]["test_accuracy"] = round(test_eval.accuracy, 4)
    progress.log(f"fine-tune: test accuracy head only {before.accuracy:.4f}, chosen model {test_eval.accuracy:.4f}")


def _split_record(report: ValidationReport, splits: Splits) -> dict:
    rel = report._rel
    return {"how": splits.how, "root": str(report.root),
            "files": [{"path": rel(s.path), "label": s.label, "split": name, "sha256": s.content}
                      for name, samples in splits.items() for s in samples]}


def _misclassified(report: ValidationReport, splits: Splits, ev: Evaluation) -> list[dict]:
    """Test samples the float model got wrong, most confident mistakes first."""
    wrong = np.flatnonzero(ev.y_pred != ev.y_true)
    rows = [{"path": report._rel(splits.test[i].path), "label": ev.classes[ev.y_true[i]],
             "predicted": ev.classes[ev.y_pred[i]], "confidence": round(float(ev.probabilities[i].max()), 4)}
            for i in wrong]
    return sorted(rows, key=lambda r: -r["confidence"])


def _metrics(report, splits, clf, val_eval, test_eval, exports, warnings, timings, int8_choice, refused) -> dict:
    spec = clf.spec
    test = test_eval.to_dict()
    return {
        "edgemaker_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": f"{report.modality}_classification",
        "classes": clf.classes,
        "splits": splits.sizes(),
        "split_how": splits.how,
        "data": report.to_dict(),
        "backbone": {"name": spec.name, "feature_dim": spec.feature_dim, "parameters": spec.parameters,
                     "licence": spec.licence, "description": spec.description,
                     **({"input_size": spec.image.size} if spec.image else
                        {"sample_rate": spec.audio.sample_rate, "window_seconds": round(spec.audio.window_seconds, 4),
                         "hop_seconds": round(spec.audio.hop_samples / spec.audio.sample_rate, 4),
                         "frontend": spec.audio.frontend}),
                     "selection": clf.selection or None},
        "training": {
            "best_epoch": clf.head.best_epoch_,
            "epochs_run": len(clf.head.history_),
            "augmented_views": clf.options.augmentation.active_views,  # as chosen (head_selection)
            "head_selection": clf.head_selection.to_dict() if isinstance(clf.head_selection, HeadSelection) else None,
            "cv_selection": clf.head_selection.to_dict() if isinstance(clf.head_selection, CVSelection) else None,
            "class_weights": clf.head.class_weights_,
            "int8_head_choice": int8_choice or None,
            "network": clf.network or None,
            "history": [vars(h) for h in clf.head.history_],
        },
        "fine_tune": clf.fine_tune or None,
        "val": {"accuracy": round(val_eval.accuracy, 4), "loss": round(val_eval.loss, 4),
                "held_out": not clf.trained_on_val},
        "test": test,
        "per_class": test["per_class"],
        "confusion_matrix": test["confusion_matrix"],
        "misclassified": _misclassified(report, splits, test_eval),
        "timings": timings,
        "exports": exports,
        "refused": refused,
        "warnings": warnings,
    }
