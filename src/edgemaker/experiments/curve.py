"""`edgemaker curve DATA --per-class 10,30,100,300,all`: test accuracy by examples per class, with
transfer learning (the default backbone's cached embeddings + a head) and without (small_cnn, or
small_cnn_mel for sounds, trained from scratch), on balanced seeded subsets of one fixed training
part; a table, a plot, and where the transfer curve flattens, which answers "how many more samples do I need?".

The test and validation splits are fixed for every size (validation drives early stopping and head
settings); only the training part is subsampled. A size above the smallest class cannot be
balanced: it is capped at the smallest class and marked.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

from .. import __version__
from ..backbones import DEFAULT_AUDIO_BACKBONES, DEFAULT_IMAGE_BACKBONE
from ..data.sources import data_root
from ..errors import EdgemakerError
from ..progress import Progress, SilentProgress
from ..tasks.options import ClassifierOptions
from .common import embedding_rows, fit, load_data, options_for, seeds, spread
from .output import check_out, write_outputs
from .plot import Point, Series, svg_plot
from .table import Table

SCRATCH = {"image": "small_cnn", "audio": "small_cnn_mel"}  # the from-scratch network per modality
FLAT = 0.01  # a step that gains less than 1 point of test accuracy: the curve has flattened


def parse_sizes(text: str) -> list[int | None]:
    """'10,30,100,all' -> [10, 30, 100, None] (None: every training sample), increasing."""
    out: list[int | None] = []
    for item in (t.strip().lower() for t in str(text).split(",")):
        if not item:
            continue
        if item == "all":
            out.append(None)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise EdgemakerError(f"--per-class {text!r}: {item!r} is not a positive whole number or 'all'; "
                                 "give e.g. 10,30,100,all")
    if not out:
        raise EdgemakerError("--per-class: give at least one size, e.g. 10,30,100,all")
    numbers = sorted({n for n in out if n is not None})
    return numbers + ([None] if None in out else [])


def balanced_subset(by_class: dict[str, list], n: int, seed: int) -> list:
    """`n` samples of every class, drawn with `seed` (a repeatable subset)."""
    rng = random.Random(seed)
    out = []
    for label in sorted(by_class):
        out += rng.sample(by_class[label], n)
    return out


def run_curve(data_dir: str | Path, per_class: str = "10,30,100,300,all", out_dir: str | Path = "curve",
              repeats: int = 3, seed: int = 0, task: str | None = None, backbone: str | None = None,
              cache_dir: Path | None = None, threads: int | None = None, progress: Progress | None = None,
              template: ClassifierOptions | None = None) -> dict:
    """Write the learning curves into `out_dir`; returns results.json's content. `backbone`: the
    transfer backbone (default: the task's default; for sounds both defaults, chosen on validation).
    `template`: options other than backbone and seed (default: train's)."""
    from ..tasks.classifier import Classifier

    start = time.perf_counter()
    data_dir, out_dir = data_root(data_dir), Path(out_dir)  # a local Path, or a RemotePath for an fsspec URL
    progress = progress or SilentProgress()
    sizes = parse_sizes(per_class)
    run_seeds = seeds(seed, repeats)
    if backbone:
        from .common import parse_backbones

        parse_backbones(backbone, task)
    check_out(data_dir, out_dir)
    cache = Classifier.open_cache(options_for(None, seed, cache_dir, threads, template))
    try:
        report, splits = load_data(data_dir, cache, progress, task, seed)
        modality = report.modality
        if backbone:
            parse_backbones(backbone, modality)
        by_class: dict[str, list] = defaultdict(list)
        for s in splits.train:
            by_class[s.label].append(s)
        smallest_label = min(sorted(by_class), key=lambda c: len(by_class[c]))
        smallest = len(by_class[smallest_label])
        scratch = SCRATCH[modality]
        rows_before = embedding_rows(cache)
        done: dict[int | None, dict] = {}
        rows = []
        for size in sizes:
            effective = None if size is None else min(size, smallest)
            if effective is None and all(len(v) == smallest for v in by_class.values()):
                effective = smallest  # every class has the same count: "all" is that balanced set
            if effective not in done:
                done[effective] = _measure(effective, by_class, splits, modality, backbone, scratch, run_seeds,
                                           cache, progress, lambda b, s: options_for(b, s, cache_dir, threads, template))
            per = len(splits.train) / len(by_class) if effective is None else effective
            rows.append({"requested": "all" if size is None else size, "per_class": effective,
                         "mean_per_class": round(per, 1), "train_samples": done[effective]["train_samples"],
                         "capped": size is not None and size > smallest,
                         "transfer": done[effective]["transfer"], "scratch": done[effective]["scratch"]})
        new_rows = embedding_rows(cache) - rows_before
    finally:
        cache.close()
    transfer_name = backbone or (DEFAULT_IMAGE_BACKBONE if modality == "image" else
                                 " or ".join(DEFAULT_AUDIO_BACKBONES) + " (chosen on validation)")
    flattening = flattening_sentence(rows)
    result = {
        "kind": "curve", "edgemaker_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": str(report.root), "task": modality, "classes": splits.classes, "splits": splits.sizes(),
        "split_how": splits.how, "split_seed": seed, "seeds": run_seeds, "repeats": len(run_seeds),
        "transfer": transfer_name, "scratch": scratch,
        "smallest_class": {"label": smallest_label, "train_samples": smallest},
        "rows": rows, "flattening": flattening, "transfer_vs_scratch": gap_sentence(rows, scratch),
        "new_embedding_rows": new_rows, "seconds": round(time.perf_counter() - start, 2),
    }
    sentences = [flattening] + ([result["transfer_vs_scratch"]] if result["transfer_vs_scratch"] else []) + \
        [f"Capped: {', '.join(str(r['requested']) for r in rows if r['capped'])} per class exceed the smallest "
         f"class's {smallest} training samples ({smallest_label}); those rows use {smallest} per class."
         ] * any(r["capped"] for r in rows)
    notes = [f"{modality} data {report.root}: fixed test split of {len(splits.test)} and validation split of "
             f"{len(splits.val)} ({splits.how}); training subsets are balanced and seeded per repeat from the "
             f"{len(splits.train)} training samples. Range = min-max of test accuracy over {len(run_seeds)} repeat(s).",
             (f"With transfer learning: {transfer_name} (frozen, cached embeddings) + softmax head. Without: "
              f"{scratch} trained from random initialisation on the same subset.")]
    title = f"Test accuracy by examples per class ({report.root.name})"
    write_outputs(out_dir, result, curve_table(rows, scratch), title, sentences, curve_plot(rows, title, scratch), notes)
    return result


def _measure(n: int | None, by_class, splits, modality: str, backbone: str | None, scratch: str,
             run_seeds: list[int], cache, progress: Progress, options) -> dict:
    transfer, from_scratch, train_n = [], [], 0
    for r, s in enumerate(run_seeds):
        subset = splits.train if n is None else balanced_subset(by_class, n, 1000 * s + n)
        train_n = len(subset)
        progress.log(f"curve: {'all' if n is None else n} per class, repeat {r + 1}/{len(run_seeds)}")
        t = fit(modality, backbone, subset, splits.val, options(backbone, s), cache, progress)
        transfer.append(t.clf.evaluate(splits.test).accuracy)
        f = fit(modality, scratch, subset, splits.val, options(scratch, s), cache, progress)
        from_scratch.append(f.clf.evaluate(splits.test).accuracy)
    return {"train_samples": train_n, "transfer": spread(transfer), "scratch": spread(from_scratch)}


def _label(r: dict) -> str:
    if r["requested"] == "all":
        return f"all (~{r['mean_per_class']:.0f})"
    return f"{r['requested']} (capped: {r['per_class']})" if r["capped"] else str(r["requested"])


def _distinct(rows: list[dict]) -> list[dict]:
    """One row per size actually trained (capped duplicates removed), smallest first."""
    out, seen = [], set()
    for r in rows:
        if r["per_class"] not in seen:
            seen.add(r["per_class"])
            out.append(r)
    return out


def flattening_sentence(rows: list[dict]) -> str:
    """Where the transfer curve's mean gains less than 1 point over the previous size."""
    pts = _distinct(rows)
    if len(pts) < 2:
        return (f"Only one size was measured ({_label(pts[0])} per class: {pts[0]['transfer']['mean']:.1%}); give "
                "several sizes to see where the curve flattens.")
    for a, b in pairwise(pts):
        gain = b["transfer"]["mean"] - a["transfer"]["mean"]
        if gain < FLAT:
            why = ("it is at the ceiling of this test split, so more samples cannot show a gain here"
                   if a["transfer"]["mean"] >= 0.995 else "so more samples of the same kind are unlikely to help much; "
                   "more varied samples or a larger backbone may")
            return (f"The transfer-learning curve flattens at {_label(a)} per class ({a['transfer']['mean']:.1%} mean test "
                    f"accuracy): going to {_label(b)} changed it by {100 * gain:+.1f} points (less than 1 point); {why}.")
    a, b = pts[-2], pts[-1]
    gain = b["transfer"]["mean"] - a["transfer"]["mean"]
    return (f"The transfer-learning curve has not flattened: the last step, {_label(a)} to {_label(b)} per class, "
            f"still gained {100 * gain:.1f} points of mean test accuracy, so more samples per class should still help.")


def gap_sentence(rows: list[dict], scratch: str = "small_cnn") -> str:
    pts = [r for r in _distinct(rows) if r["scratch"] is not None]
    if not pts:
        return ""
    parts = [f"{_label(r)}: {100 * (r['transfer']['mean'] - r['scratch']['mean']):+.1f}" for r in pts]
    ahead = [r for r in pts if r["transfer"]["mean"] > r["scratch"]["mean"]]
    verdict = ("ahead at every size" if len(ahead) == len(pts) else
               "behind or equal at " + ", ".join(_label(r) for r in pts if r not in ahead))
    return f"Transfer learning vs {scratch} from scratch (mean test accuracy, points): {'; '.join(parts)} — {verdict}."


def _range(s: dict | None) -> str:
    if s is None:
        return "n/a"
    if s["min"] == s["max"]:
        return f"{100 * s['mean']:.1f}%"
    return f"{100 * s['min']:.1f}-{100 * s['max']:.1f}% (mean {100 * s['mean']:.1f}%)"


def curve_table(rows: list[dict], scratch: str) -> Table:
    t = Table(["Examples per class", "Train samples", "Test accuracy with transfer learning",
               f"Without transfer learning ({scratch} from scratch)"], right=[False, True, True, True])
    for r in rows:
        t.rows.append([_label(r), r["train_samples"], _range(r["transfer"]), _range(r["scratch"])])
    return t


def curve_plot(rows: list[dict], title: str, scratch: str = "small_cnn") -> str:
    pts = _distinct(rows)
    series = []
    for key, name in (("transfer", "with transfer learning"), ("scratch", f"from scratch ({scratch})")):
        s = Series(name + " (mean; bar: min-max)")
        for r in pts:
            if r[key] is not None:
                s.points.append(Point(r["mean_per_class"], r[key]["mean"], r[key]["min"], r[key]["max"]))
        if s.points:
            series.append(s)
    ticks = [(r["mean_per_class"], _label(r).split(" (")[0]) for r in pts]
    return svg_plot(series, title, "examples per class (log scale)", "test accuracy", log_x=True, x_ticks=ticks)
