"""`edgemaker compare DATA --backbones a,b,c`: every backbone trained on one split, side by side
(parameters, depth, size, time per epoch, best epoch, accuracy), with
the int8 file each would ship, and a recommendation chosen on validation accuracy, never on test.

Repeats vary the training seed (the head's; a from-scratch network's too), never the split. A
second run of the same compare reuses cached embeddings, the trained small_cnn and the int8 files.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..data.sources import data_root
from ..progress import Progress, SilentProgress
from ..tasks.options import ClassifierOptions
from .common import (
    embedding_rows,
    fit,
    load_data,
    options_for,
    parse_backbones,
    seeds,
    spread,
)
from .int8file import depth, int8_file, seconds_per_sample
from .output import check_out, write_outputs
from .plot import Point, Series, svg_plot
from .table import Table

TOLERANCE = 0.01  # a backbone this close to the best on validation counts as as good


def run_compare(data_dir: str | Path, backbones: str | Sequence[str], out_dir: str | Path, repeats: int = 3,
                seed: int = 0, task: str | None = None, cache_dir: Path | None = None, threads: int | None = None,
                progress: Progress | None = None, template: ClassifierOptions | None = None) -> dict:
    """Train each backbone `repeats` times on one split and write the comparison into `out_dir`;
    returns results.json's content. `template`: options other than backbone and seed (default: train's)."""
    from ..tasks.classifier import Classifier

    start = time.perf_counter()
    data_dir, out_dir = data_root(data_dir), Path(out_dir)  # a local Path, or a RemotePath for an fsspec URL
    progress = progress or SilentProgress()
    text = backbones if isinstance(backbones, str) else ",".join(backbones)
    names = parse_backbones(text, task)  # before any work: unknown names, mixed modalities
    run_seeds = seeds(seed, repeats)
    check_out(data_dir, out_dir)
    cache = Classifier.open_cache(options_for(None, seed, cache_dir, threads, template))
    try:
        report, splits = load_data(data_dir, cache, progress, task, seed)
        names = parse_backbones(text, report.modality)  # image backbones for images, sound ones for sounds
        rows_before = embedding_rows(cache)
        rows = [_one_backbone(name, report.modality, splits, run_seeds, out_dir, cache, cache_dir, threads, progress,
                              template)
                for name in names]
        new_rows = embedding_rows(cache) - rows_before
    finally:
        cache.close()
    recommendation = recommend(rows)
    result = {
        "kind": "compare",
        "edgemaker_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": str(report.root), "task": report.modality, "classes": splits.classes, "splits": splits.sizes(),
        "split_how": splits.how, "split_seed": seed, "seeds": run_seeds, "repeats": len(run_seeds),
        "rows": rows, "recommendation": recommendation,
        "cache": {"new_embedding_rows": new_rows,
                  "networks_reused": sum(r["network"] is not None and r["network"]["reused"] for r in rows),
                  "int8_files_reused": sum(bool(r["int8"].get("reused")) for r in rows)},
        "seconds": round(time.perf_counter() - start, 2),
    }
    table = compare_table(rows)
    sentences = [recommendation["sentence"]] + _findings(rows, len(splits.test))
    notes = [f"{report.modality} data {report.root}: {splits.sizes()} (train/val/test), {splits.how}; the same split "
             f"for every backbone. Accuracies are mean ± std over {len(run_seeds)} training seed(s) {run_seeds}.",
             "int8 = the full-integer .tflite file (float head kept only where the int8 flow chose it); its test "
             "accuracy, RAM (tensor arena estimate) and MACs are of the first seed's model. 'extract ms' is decode + "
             "embed of one new sample (cache bypassed); 'train s' is head fitting with its settings search (plus "
             "the network's own training for a from-scratch backbone).",
             f"This run computed {new_rows} new embeddings and reused {result['cache']['int8_files_reused']} int8 "
             f"file(s) from the cache; {result['seconds']:.1f} s in all."]
    write_outputs(out_dir, result, table, f"Backbone comparison on {report.root.name}", sentences,
                  compare_plot(rows, report.root.name), notes)
    return result


def _one_backbone(name: str, modality: str, splits, run_seeds: list[int], out_dir: Path, cache, cache_dir,
                  threads, progress: Progress, template: ClassifierOptions | None) -> dict:
    runs, first, first_int8 = [], None, None
    for i, s in enumerate(run_seeds):
        progress.log(f"compare: {name}, seed {s}")
        fitted = fit(modality, name, splits.train, splits.val, options_for(name, s, cache_dir, threads, template),
                     cache, progress)
        clf = fitted.clf
        val, test = clf.evaluate(splits.val), clf.evaluate(splits.test)
        history = clf.head.history_
        trial = next((t for t in getattr(clf.head_selection, "trials", []) if t.settings == clf.head_selection.chosen),
                     None) if clf.head_selection else None
        runs.append({"seed": s, "val_accuracy": round(val.accuracy, 4), "test_accuracy": round(test.accuracy, 4),
                     "best_epoch": int(clf.head.best_epoch_), "epochs_run": len(history),
                     "extract_s": round(fitted.extract_s, 3), "head_train_s": round(fitted.head_s, 3),
                     "s_per_epoch": round(trial.seconds / len(history), 4) if trial and history else None,
                     "network_train_s": round(fitted.network_s, 3) if fitted.network else None,
                     "network_reused": fitted.network_reused if fitted.network else None,
                     "new_embedding_rows": fitted.new_rows})
        if i == 0:
            first = fitted
            first_int8 = int8_file(clf, splits, modality, out_dir / name, progress, threads)
    assert first is not None and first_int8 is not None
    clf = first.clf
    spec = clf.spec
    head_params = (spec.feature_dim + 1) * len(clf.classes)
    return {
        "backbone": name,
        "description": spec.description,
        "input": f"{spec.image.size}px" if spec.image else f"{spec.audio.window_seconds:.2f} s windows",
        "parameters": spec.parameters + head_params,
        "backbone_parameters": spec.parameters,
        "depth": depth(clf.backbone.onnx_path),
        "fp32_bytes": first_int8.get("fp32_bytes"),
        "int8_bytes": first_int8.get("int8_bytes"),
        "extract_s_per_sample": round(seconds_per_sample(clf.backbone, splits.test, clf.options), 5),
        "train_s": spread([r["head_train_s"] + (r["network_train_s"] or 0.0) for r in runs]),
        "head_train_s": spread([r["head_train_s"] for r in runs]),
        "s_per_epoch": runs[0]["s_per_epoch"],
        "best_epoch": runs[0]["best_epoch"], "epochs_run": runs[0]["epochs_run"],
        "val_accuracy": spread([r["val_accuracy"] for r in runs]),
        "test_accuracy": spread([r["test_accuracy"] for r in runs]),
        "int8_val_accuracy": _int8_val(first_int8),
        "int8_test_accuracy": first_int8.get("test_accuracy"),
        "peak_ram_bytes": first_int8.get("peak_ram_bytes"),
        "macs": first_int8.get("macs"),
        "network": ({**first.network, "reused": first.network_reused} if first.network else None),
        "int8": first_int8,
        "runs": runs,
    }


def _int8_val(record: dict) -> float | None:
    """Validation accuracy of the int8 file as shipped (the int8 flow scored it there)."""
    choice = record.get("int8_choice") or {}
    if record.get("refused") or not choice:
        return None
    aware = choice.get("kept") == "int8-aware head"
    return choice.get("int8_aware_val_accuracy" if aware else "plain_val_accuracy")


def recommend(rows: list[dict]) -> dict:
    """The smallest file whose validation accuracy is within 1 point of the best, scoring what ships:
    the int8 file's validation accuracy (the float model's mean where there is no int8 file). On
    validation only, so the test columns stay an honest estimate of the pick."""
    def size(r: dict) -> float:
        return r["int8_bytes"] or r["fp32_bytes"] or float("inf")

    def score(r: dict) -> float:
        v = r.get("int8_val_accuracy")
        return r["val_accuracy"]["mean"] if v is None else v

    def what(r: dict) -> str:
        return "int8 file" if r.get("int8_val_accuracy") is not None else "float model"

    tolerance = TOLERANCE
    best = max(rows, key=lambda r: (score(r), -size(r)))
    close = [r for r in rows if score(r) >= score(best) - tolerance]
    pick = min(close, key=lambda r: (size(r), -score(r)))
    mb = size(pick) / 1e6
    if pick is best:
        why = (f"its {what(best)} has the best validation accuracy ({score(best):.3f}) and no smaller file comes "
               f"within {100 * tolerance:.1f} points of it")
    else:
        why = (f"its {what(pick)}'s validation accuracy {score(pick):.3f} is within {100 * tolerance:.1f} points of "
               f"the best ({best['backbone']}, {score(best):.3f}) at {mb:.2f} MB instead of {size(best) / 1e6:.2f} MB")
    return {"backbone": pick["backbone"], "rule": "smallest file within 1 point of the best validation accuracy of "
            "the file that ships (int8; float mean where there is none)", "tolerance": round(tolerance, 4),
            "best_by_validation": best["backbone"], "scores": {r["backbone"]: score(r) for r in rows},
            "sentence": f"Recommended: {pick['backbone']} ({mb:.2f} MB int8) — {why}."}


def _findings(rows: list[dict], n_test: int) -> list[str]:
    """Int8 files refused, or more than a point below their own float model (the first seed's)."""
    out = []
    for r in rows:
        i8, t = r["int8_test_accuracy"], r["runs"][0]["test_accuracy"]
        if r["int8"].get("refused"):
            out.append(f"{r['backbone']}: int8 file refused — {r['int8']['refused']}")
        elif i8 is not None and t - i8 > 0.01:
            out.append(f"{r['backbone']}: the int8 file is {100 * (t - i8):.1f} points below its float model on test "
                       f"({i8:.3f} vs {t:.3f}, {round((t - i8) * n_test)} of {n_test} test samples).")
    return out


def _acc(s: dict) -> str:
    return f"{s['mean']:.3f}±{s['std']:.3f}" if len(s["values"]) > 1 else f"{s['mean']:.3f}"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}"


def compare_table(rows: list[dict]) -> Table:
    t = Table(["backbone", "params", "depth", "fp32 MB", "int8 MB", "extract ms", "train s", "s/epoch",
               "best epoch", "val acc", "test acc", "int8 val", "int8 test", "RAM kB", "MMACs"])
    for r in rows:
        t.rows.append([
            r["backbone"], f"{r['parameters']:,}", r["depth"], _mb(r["fp32_bytes"]), _mb(r["int8_bytes"]),
            f"{1000 * r['extract_s_per_sample']:.1f}", f"{r['train_s']['mean']:.1f}",
            "-" if r["s_per_epoch"] is None else f"{r['s_per_epoch']:.3f}", f"{r['best_epoch']}/{r['epochs_run']}",
            _acc(r["val_accuracy"]), _acc(r["test_accuracy"]),
            "-" if r["int8_val_accuracy"] is None else f"{r['int8_val_accuracy']:.3f}",
            "-" if r["int8_test_accuracy"] is None else f"{r['int8_test_accuracy']:.3f}",
            "-" if r["peak_ram_bytes"] is None else f"{r['peak_ram_bytes'] / 1e3:.0f}",
            "-" if r["macs"] is None else f"{r['macs'] / 1e6:.1f}"])
    return t


def compare_plot(rows: list[dict], name: str) -> str:
    """Accuracy against int8 file size: up and to the left is better."""
    test = Series("test accuracy (float, mean; bar: min-max over seeds)", line=False)
    val = Series("validation accuracy (mean)", line=False, hollow=True)
    for r in rows:
        size = (r["int8_bytes"] or r["fp32_bytes"] or 0) / 1e6
        if size <= 0:
            continue
        acc = r["test_accuracy"]
        test.points.append(Point(size, acc["mean"], acc["min"], acc["max"], r["backbone"]))
        val.points.append(Point(size, r["val_accuracy"]["mean"]))
    return svg_plot([test, val], f"Accuracy against int8 size ({name})", "int8 file size (MB, log scale)",
                    "accuracy", log_x=True)
