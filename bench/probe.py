"""The product's head against a scikit-learn logistic-regression probe on the same cached embeddings.

For each DATA folder: split as `edgemaker train` does (seed 0), build the classifier with
`Classifier.create` (the product's own extraction and feature cache, so a second run is fast), then
on the very same embeddings report validation and test accuracy (sample level: a sound clip is the
mean of its windows' probabilities) of
  default       the head exactly as `edgemaker train` builds it (its head choice by cross-validation
                over train + val included, refitted on train + val: its validation accuracy is not held out);
  fixed         the head with the pre-selection fixed settings (dropout 0.2, label smoothing 0.1,
                weight decay 1e-4, 2 augmented views), i.e. the defaults before issue 10 part 0;
  probe         LogisticRegression, C by 3-fold CV on the training part (folds grouped by sample),
                clean embeddings (no augmentation), refit on the whole training part;
  probe+aug     the same probe fitted on the augmented views too;
  default+refit the default's chosen settings refitted on train + validation for the chosen
                number of epochs (its validation accuracy is then not held out: shown in brackets).

    python bench/probe.py [DATA ...] [--json out.json]     (`make bench` runs it on the shared sets)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.evaluate.metrics import evaluate_predictions
from edgemaker.progress import SilentProgress
from edgemaker.tasks.classifier import Classifier, embed_samples, make_head, label_indices, classifier_for
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_SETS = ("caltech-hard40", "esc10-dev9")
C_GRID = np.logspace(-4, 2, 7)
# The defaults before head selection, spelt out: explicit settings switch the search off.
FIXED = dict(dropout=0.2, label_smoothing=0.1, weight_decay=1e-4)


def accuracy(samples, emb, proba_rows, classes) -> float:
    proba = emb.aggregate(proba_rows)
    return evaluate_predictions(classes, [s.label for s in samples], proba).accuracy


def probe(x_train, y_train, groups):
    """LogisticRegression (standardised features), C by grouped 3-fold CV, refit on all of train."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(model, {"logisticregression__C": C_GRID}, cv=GroupKFold(3), n_jobs=1)
    search.fit(x_train, y_train, groups=groups)
    return search.best_estimator_, float(search.best_params_["logisticregression__C"])


def measure(data: Path) -> dict:
    options = ClassifierOptions()
    cache = Classifier.open_cache(options)
    progress = SilentProgress()
    try:
        report = validate_folder(data, cache=cache)
        splits = make_splits(report, SplitOptions(seed=options.hparams.seed))
        cls = classifier_for(report.modality)
        rows: dict[str, dict] = {}

        def row(name, clf_or_head, embs, seconds, **extra):
            head = getattr(clf_or_head, "head", clf_or_head)
            classes = [str(c) for c in head.classes_]
            rows[name] = {"val": round(accuracy(splits.val, embs["val"], head.predict_proba(embs["val"].vectors), classes), 4),
                          "test": round(accuracy(splits.test, embs["test"], head.predict_proba(embs["test"].vectors), classes), 4),
                          "seconds": round(seconds, 2), **extra}

        # Fixed (pre-selection) settings first: it also warms the cache with every view.
        fixed_opts = replace(options, hparams=replace(HParams(), **FIXED),
                             augmentation=AugmentationOptions(enabled=True, views=2))
        t = time.perf_counter()
        fixed = cls.create(splits.train, splits.val, fixed_opts, progress, cache)
        fixed_s = time.perf_counter() - t
        embs = {"train": embed_samples(fixed.backbone, splits.train, 2, fixed_opts, cache, progress, "train"),
                "val": fixed.embed(splits.val), "test": fixed.embed(splits.test)}
        row("fixed", fixed, embs, fixed.timings["train_s"], extract_s=round(fixed.timings["extract_s"], 1),
            total_s=round(fixed_s, 1))
        t = time.perf_counter()
        default = cls.create(splits.train, splits.val, options, progress, cache)
        total = time.perf_counter() - t
        if default.spec.cache_id != fixed.spec.cache_id:  # audio: another backbone won validation
            embs = {"train": embed_samples(default.backbone, splits.train, 2, fixed_opts, cache, progress, "train"),
                    "val": default.embed(splits.val), "test": default.embed(splits.test)}
        sel = default.head_selection
        row("default", default, embs, default.timings["train_s"], total_s=round(total, 1),
            backbone=default.spec.name, chosen=sel.chosen, selection_s=round(sel.seconds, 2),
            fits=len(getattr(sel, "trials", None) or getattr(sel, "candidates", [])))

        # Refit on train + validation with the chosen settings for the chosen number of epochs.
        chosen, epochs = default.head_selection.chosen, default.head.best_epoch_
        fit_rows = embs["train"] if chosen["views"] == "augmented" else embs["train"].clean()
        t = time.perf_counter()
        refit = make_head(replace(options, hparams=replace(options.hparams, epochs=max(epochs, 1))), chosen).fit(
            np.vstack([fit_rows.vectors, embs["val"].vectors]),
            np.concatenate([label_indices(splits.train, fit_rows), label_indices(splits.val, embs["val"])]))
        row("default+refit", refit, embs, time.perf_counter() - t, epochs=epochs, val_not_held_out=True)

        clean = embs["train"].clean()
        for name, e in (("probe", clean), ("probe+aug", embs["train"])):
            t = time.perf_counter()
            model, c = probe(e.vectors, label_indices(splits.train, e), e.owner)
            seconds = time.perf_counter() - t
            row(name, model, embs, seconds, C=c)
        return {"data": str(data), "modality": report.modality, "backbone": default.spec.name,
                "sizes": splits.sizes(), "rows": rows}
    finally:
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", type=Path,
                        help=f"default (`make bench`): {', '.join(DEFAULT_SETS)} from ../shared/data when present")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data_dirs = args.data or [SHARED / name for name in DEFAULT_SETS if (SHARED / name).is_dir()]
    if not data_dirs:
        print(f"probe: no data (none of {', '.join(DEFAULT_SETS)} in {SHARED}); skipped")
    results = []
    for data in data_dirs:
        r = measure(data)
        results.append(r)
        print(f"{data.name} ({r['modality']}, {r['backbone']}; {r['sizes']}):")
        for name, v in r["rows"].items():
            extra = {k: v[k] for k in v if k not in ("val", "test", "seconds")}
            print(f"  {name:<14} val {v['val']:.3f}  test {v['test']:.3f}  {v['seconds']:6.2f} s  {extra or ''}")
    if args.json:
        from machine import describe

        args.json.write_text(json.dumps({"measured": describe(), "sets": results}, indent=1))


if __name__ == "__main__":
    main()
