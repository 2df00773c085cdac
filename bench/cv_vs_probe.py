"""The defaults (head chosen by cross-validation, refitted on train + val, as `edgemaker train` does)
against a plain logistic-regression probe (C by grouped 3-fold CV, fit on train + val, clean
embeddings: bench/probe.py's `probe`) on the same cached embeddings, one seeded split per set.

    python bench/cv_vs_probe.py DATA [DATA ...] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe import accuracy, probe  # noqa: E402  (bench/probe.py)

from edgemaker.data.splits import SplitOptions, make_splits  # noqa: E402
from edgemaker.data.validate import validate_folder  # noqa: E402
from edgemaker.heads.cv import merge  # noqa: E402
from edgemaker.progress import SilentProgress  # noqa: E402
from edgemaker.tasks.classifier import Classifier, classifier_for  # noqa: E402
from edgemaker.tasks.options import ClassifierOptions, HParams  # noqa: E402


def measure(data: Path, seed: int) -> dict:
    options = ClassifierOptions(hparams=HParams(seed=seed, refit_on_val=True))
    cache = Classifier.open_cache(options)
    try:
        report = validate_folder(data, cache=cache)
        splits = make_splits(report, SplitOptions(seed=seed))
        t = time.perf_counter()
        clf = classifier_for(report.modality).create(splits.train, splits.val, options, SilentProgress(), cache)
        create_s = time.perf_counter() - t
        test = clf.evaluate(splits.test)
        emb = merge(clf.embed(splits.train), clf.embed(splits.val))
        labels = np.array([s.label for s in [*splits.train, *splits.val]])[emb.owner]
        t = time.perf_counter()
        model, c = probe(emb.vectors, labels, emb.owner)
        probe_s = time.perf_counter() - t
        x_test = clf.embed(splits.test)
        probe_test = accuracy(splits.test, x_test, model.predict_proba(x_test.vectors), [str(k) for k in model.classes_])
        sel = clf.head_selection
        return {"data": data.name, "seed": seed, "backbone": clf.spec.name, "sizes": splits.sizes(),
                "default_test": round(test.accuracy, 4), "probe_test": round(probe_test, 4), "probe_C": c,
                "chosen": sel.chosen, "cv_mean": round(sel.chosen_result.mean, 4), "cv_std": round(sel.chosen_result.std, 4),
                "backbones": clf.selection or None, "selection_s": round(sel.seconds, 1),
                "create_s": round(create_s, 1), "probe_s": round(probe_s, 1)}
    finally:
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for data in args.data:
        r = measure(data, args.seed)
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
