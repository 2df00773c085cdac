"""Quality that cannot be tuned to one split: the product against a plain probe over several splits.

For every data set (default: every set in ../shared/data) and 3 seeded splits, test accuracy of
  defaults        `edgemaker train DATA` as a user runs it (public API: pipeline.train_run), float model;
  probe           L2 logistic regression (bench/probe.py's: C by grouped 3-fold CV) fitted on train +
                  validation clean embeddings of the backbone the defaults chose, same test files;
  fine-tune-auto  `edgemaker train DATA --fine-tune auto`.
Splits: folders without their own split are split by the product with seeds 0, 1, 2. A set with
train/val/test folders is rotated instead: when its files carry ESC-50 fold numbers (`4-1234-A-0.wav`)
the folds rotate (test fold 5, 4, 3; validation the fold before; the other three train), so clips of
one recording stay together; otherwise the three folders swap roles.
Per method: mean and standard deviation over the splits, wins / ties / losses against the probe (a
tie: exact McNemar test on the paired test predictions, p >= 0.05), and seconds per run.
Results are written after every run (--json; default bench-quality.json) and a rerun resumes from
them, so a long bench can be stopped and continued; --fresh starts over.

    python bench/quality.py [--sets caltech-dev10,cars-dev10] [--splits 0,1,2] [--methods defaults,probe]
                            [--data-root ../shared/data] [--json bench-quality.json] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from threadpoolctl import threadpool_limits

from edgemaker.backbones import get_spec
from edgemaker.backbones.runtime import Backbone
from edgemaker.data.splits import SplitOptions
from edgemaker.data.validate import validate_folder
from edgemaker.evaluate.metrics import paired_loss
from edgemaker.features.cache import FeatureCache
from edgemaker.features.extract import extract_embeddings
from edgemaker.pipeline import train_run
from edgemaker.progress import SilentProgress
from edgemaker.tasks.options import ClassifierOptions, FineTuneOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe import probe  # noqa: E402  (bench/probe.py: the one logistic-regression probe of the benches)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = ("caltech-dev10", "caltech-hard40", "cars-dev10", "esc10-dev9")
METHODS = ("defaults", "probe", "fine-tune-auto")
SIGNIFICANCE = 0.05
ESC_FOLD = re.compile(r"^([1-5])-")


def rotated(data: Path, rotation: int, into: Path) -> Path:
    """A train/val/test layout of `data` (symbolic links) with the roles rotated `rotation` times."""
    files = [p for p in sorted(data.rglob("*")) if p.is_file() and len(p.relative_to(data).parts) == 3]
    esc = all(ESC_FOLD.match(p.name) for p in files)
    roles = ("train", "val", "test")
    for p in files:
        split, label = p.relative_to(data).parts[:2]
        if esc:
            fold = int(ESC_FOLD.match(p.name).group(1))
            test, val = 5 - rotation, (5 - rotation - 2) % 5 + 1
            role = "test" if fold == test else "val" if fold == val else "train"
        else:
            role = roles[(roles.index(split) + rotation) % 3]
        target = into / role / label / p.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(p.resolve())
    return into


def presplit(data: Path) -> bool:
    return all((data / s).is_dir() for s in ("train", "val", "test"))


def run_product(data: Path, split: int, fine_tune: bool, work: Path) -> dict:
    """One `edgemaker train` run (fp32 ONNX file only); its metrics.json and split.json."""
    options = ClassifierOptions(fine_tune=FineTuneOptions(depth="auto")) if fine_tune else ClassifierOptions()
    out = work / ("fine-tune" if fine_tune else "defaults")
    t0 = time.perf_counter()
    metrics = train_run(data, out, options, split=SplitOptions(seed=split), formats=["onnx-fp32"])
    seconds = time.perf_counter() - t0
    files = json.loads((out / "split.json").read_text())["files"]
    test = [f["path"] for f in files if f["split"] == "test"]
    wrong = {m["path"] for m in metrics["misclassified"]}
    return {"accuracy": metrics["test"]["accuracy"], "seconds": round(seconds, 1),
            "backbone": metrics["backbone"]["name"], "correct": [p not in wrong for p in test], "test": test,
            "files": files, "chosen_k": (metrics.get("fine_tune") or {}).get("chosen_k"),
            "fine_tune": fine_tune_evidence(metrics.get("fine_tune")),
            "label_issues": {"count": (metrics.get("label_issues") or {}).get("count"),
                             "seconds": metrics["timings"].get("label_issues_s")}}


def fine_tune_evidence(record: dict | None) -> dict | None:
    """What decided `--fine-tune auto` (path, folds, paired samples, head-only and chosen accuracy, seconds)."""
    if not record:
        return None
    keep = ("path", "path_reason", "chosen_k", "paired", "recipe", "refit", "head_only", "fine_tuned", "extra_s",
            "cpu_s")
    return {k: record[k] for k in keep if k in record}


def run_probe(data: Path, files: list[dict], backbone: str) -> dict:
    """bench/probe.py's probe on train + validation clean embeddings of `backbone`; test accuracy per sample."""
    cache = FeatureCache(None)
    try:
        report = validate_folder(data, cache=cache)
        by_rel = {Path(s.path).relative_to(report.root).as_posix(): s for s in report.samples}
        parts = {name: [by_rel[f["path"]] for f in files if f["split"] in name] for name in (("train", "val"), ("test",))}
        model = Backbone(get_spec(backbone))
        t0 = time.perf_counter()
        fit_samples, test_samples = parts[("train", "val")], parts[("test",)]
        fit = extract_embeddings(fit_samples, model, cache, 0, None, SilentProgress())
        test = extract_embeddings(test_samples, model, cache, 0, None, SilentProgress())
        y_fit = np.array([fit_samples[i].label for i in fit.owner])
        with threadpool_limits(1):  # small matrices: a second BLAS thread only spins (see pyproject.toml)
            clf, c = probe(fit.vectors, y_fit, fit.owner)
        proba = test.aggregate(clf.predict_proba(test.vectors))
        predicted = np.asarray(clf.classes_)[proba.argmax(1)]
        correct = [str(p) == s.label for p, s in zip(predicted, test_samples)]
        return {"accuracy": round(float(np.mean(correct)), 4), "seconds": round(time.perf_counter() - t0, 1),
                "correct": correct, "C": c, "backbone": backbone}
    finally:
        cache.close()


def compare(method: list[bool], reference: list[bool]) -> str:
    """win / tie / loss of `method` against `reference` on the same test samples (exact McNemar)."""
    y_true = np.zeros(len(method), int)
    as_eval = lambda right: SimpleNamespace(y_true=y_true, y_pred=np.where(right, 0, 1))  # noqa: E731
    pl = paired_loss(as_eval(reference), as_eval(method))
    if pl.p_value >= SIGNIFICANCE or pl.lost == pl.gained:
        return "tie"
    return "win" if pl.gained > pl.lost else "loss"


def measure(data: Path, split: int, methods: list[str], done: dict) -> dict:
    """Every method on one split of `data` (those already in `done` are kept)."""
    row = dict(done)
    with tempfile.TemporaryDirectory(prefix="edgemaker-quality-") as tmp:
        work = Path(tmp)
        source = rotated(data, split, work / "data") if presplit(data) else data
        base = row.get("defaults")
        if ("defaults" in methods and base is None) or ("probe" in methods and "probe" not in row):
            base = run_product(source, split, False, work)
            if "defaults" in methods:
                row["defaults"] = base
        if "probe" in methods and "probe" not in row:
            row["probe"] = {**run_probe(source, base["files"], base["backbone"]), "test": base["test"]}
        if "fine-tune-auto" in methods and "fine-tune-auto" not in row:
            row["fine-tune-auto"] = run_product(source, split, True, work)
    for r in row.values():
        r.pop("files", None)
    return row


def summarise(results: dict) -> dict:
    out = {}
    for name, splits in results.items():
        out[name] = {}
        for method in METHODS:
            rows = [r[method] for r in splits.values() if method in r]
            if not rows:
                continue
            accs = [r["accuracy"] for r in rows]
            s = {"splits": len(rows), "mean": round(statistics.mean(accs), 4),
                 "std": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
                 "seconds": round(statistics.mean(r["seconds"] for r in rows), 1)}
            if method != "probe":
                vs = [compare(r[method]["correct"], r["probe"]["correct"]) for r in splits.values()
                      if method in r and "probe" in r]
                s["vs_probe"] = {k: vs.count(k) for k in ("win", "tie", "loss")}
            out[name][method] = s
    return out


def table(summary: dict) -> str:
    lines = [f"{'set':<16}{'method':<16}{'splits':>7}{'mean':>8}{'std':>8}  {'vs probe W/T/L':<16}{'s/run':>8}"]
    for name, methods in summary.items():
        for method, s in methods.items():
            wtl = "/".join(str(s["vs_probe"][k]) for k in ("win", "tie", "loss")) if "vs_probe" in s else "-"
            lines.append(f"{name:<16}{method:<16}{s['splits']:>7}{s['mean']:>8.4f}{s['std']:>8.4f}  {wtl:<16}"
                         f"{s['seconds']:>8.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=SHARED)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated folder names under --data-root")
    parser.add_argument("--splits", default="0,1,2", help="split seeds (presplit sets: rotations 0-2)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"any of {', '.join(METHODS)}")
    parser.add_argument("--json", type=Path, default=Path("bench-quality.json"))
    parser.add_argument("--fresh", action="store_true", help="ignore results already in --json")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method {sorted(unknown)[0]!r}: choose from {', '.join(METHODS)}")
    splits = [int(s) for s in args.splits.split(",") if s]
    if any(s not in (0, 1, 2) for s in splits):
        parser.error("--splits: seeds 0, 1 and 2 (a presplit set has three rotations)")
    sets = [args.data_root / s for s in args.sets.split(",") if s and (args.data_root / s).is_dir()]
    if not sets:
        print(f"quality: no data (none of {args.sets} in {args.data_root}); skipped")
        return
    saved = {} if args.fresh or not args.json.is_file() else json.loads(args.json.read_text())
    results: dict = saved.get("results", {})
    for data in sets:
        for split in splits:
            done = results.get(data.name, {}).get(str(split), {})
            if all(m in done for m in methods):
                continue
            print(f"quality: {data.name} split {split}: {', '.join(m for m in methods if m not in done)}",
                  file=sys.stderr, flush=True)
            results.setdefault(data.name, {})[str(split)] = measure(data, split, methods, done)
            record = {"machine": f"{os.cpu_count()} CPUs", "significance": SIGNIFICANCE, "results": results,
                      "summary": summarise(results)}
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(args.json)
    print(table(summarise(results)))


if __name__ == "__main__":
    main()
