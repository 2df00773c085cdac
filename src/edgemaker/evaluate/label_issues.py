"""Likely label errors: samples whose given label gets a low out-of-fold probability.

Two steps, kept apart so any out-of-fold probabilities can feed the second:
  out_of_fold_probabilities  k-fold L2 logistic regression on cached embeddings (group-aware: a
                             clip's windows, and samples that share a group, stay in one fold);
  find_label_issues          confident learning (Northcutt, Jiang & Chuang, "Confident Learning:
                             Estimating Uncertainty in Dataset Labels", JAIR 2021) through
                             cleanlab's find_label_issues, ranked by self-confidence (the
                             out-of-fold probability of the given label, lowest first).
A sample's probabilities are never computed by a model that saw it, so a mislabelled photo cannot
vouch for its own label. Only training data is used (train + validation of a run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

FOLDS = 5
# Inverse L2 strength on standardised embeddings. Out-of-fold probabilities only rank samples, so one
# moderate value is used instead of an inner search (that would multiply the cost by the grid size).
C_DEFAULT = 0.1
MIN_PER_CLASS = 2  # fewer samples in a class leave a fold without it: no out-of-fold probability
METHOD = ("confident learning (cleanlab find_label_issues, filter prune_by_noise_rate) on out-of-fold "
          "probabilities, ranked by self-confidence")


@dataclass
class LabelIssues:
    """The likely label errors of a set of samples (`issues`, most suspicious first), or why none were sought."""

    issues: list[dict] = field(default_factory=list)
    samples: int = 0
    folds: int = 0
    C: float = C_DEFAULT
    backbone: str | None = None
    seconds: float = 0.0
    skipped: str | None = None
    oof_accuracy: float | None = None

    def to_dict(self) -> dict:
        return {"method": METHOD, "probabilities": f"{self.folds}-fold L2 logistic regression (C={self.C:g}, "
                f"standardised) on {self.backbone or 'the'} embeddings", "backbone": self.backbone,
                "samples": self.samples, "folds": self.folds, "out_of_fold_accuracy": self.oof_accuracy,
                "seconds": round(self.seconds, 2), "skipped": self.skipped, "count": len(self.issues),
                "issues": self.issues}


def out_of_fold_probabilities(vectors: np.ndarray, owner: np.ndarray, labels: Sequence[int], n_classes: int,
                              groups: Sequence | None = None, folds: int = FOLDS, seed: int = 0,
                              C: float = C_DEFAULT) -> tuple[np.ndarray, int]:
    """(n_samples, n_classes) probabilities, each from a model fitted without that sample's fold, and
    the number of folds used.

    `vectors` are rows (windows) of samples `owner`; `labels` are per-sample class indices; `groups`
    (per sample, default: each sample its own) keep related samples in one fold. A sample's
    probability is the mean over its windows. Folds: `folds`, or fewer when the smallest class is
    smaller (at least 2)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    y = np.asarray(labels, int)
    n = len(y)
    counts = np.bincount(y, minlength=n_classes)
    smallest = int(counts[counts > 0].min())
    k = int(min(folds, smallest))
    if k < MIN_PER_CLASS:
        raise ValueError(f"a class has {smallest} sample(s); out-of-fold probabilities need {MIN_PER_CLASS}")
    groups = np.arange(n) if groups is None else np.asarray(groups)
    proba = np.zeros((n, n_classes))
    rows_of = np.asarray(owner)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with threadpool_limits(1):  # small matrices: a second BLAS thread only spins
        for train_idx, test_idx in splitter.split(np.zeros(n), y, groups):
            train_rows = np.isin(rows_of, train_idx)
            test_rows = np.isin(rows_of, test_idx)
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
            model.fit(vectors[train_rows], y[rows_of[train_rows]])
            p = np.zeros((int(test_rows.sum()), n_classes))
            p[:, model.classes_] = model.predict_proba(vectors[test_rows])  # a class absent from a fold scores 0
            sums = np.zeros((n, n_classes))
            np.add.at(sums, rows_of[test_rows], p)
            windows = np.bincount(rows_of[test_rows], minlength=n)
            proba[test_idx] = sums[test_idx] / np.maximum(windows[test_idx], 1)[:, None]
    return proba, k


def find_label_issues(probabilities: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Indices of the likely label errors, most suspicious first (cleanlab's confident learning on
    out-of-fold `probabilities`; `labels` are the given class indices)."""
    from cleanlab.filter import find_label_issues as cleanlab_find

    y = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    if len(y) == 0:
        return np.zeros(0, int)
    probabilities = probabilities / np.maximum(probabilities.sum(1, keepdims=True), 1e-12)
    return np.asarray(cleanlab_find(y, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1), int)


def issues_table(probabilities: np.ndarray, labels: Sequence[int], classes: Sequence[str], names: Sequence[str],
                 splits: Sequence[str | None] | None = None) -> list[dict]:
    """One row per likely label error, ranked: file, given label, suggested label and their
    out-of-fold probabilities."""
    y = np.asarray(labels, int)
    rows = []
    for i in find_label_issues(probabilities, y):
        p = probabilities[i]
        best = int(np.argmax(p))
        rows.append({"path": names[i], "label": classes[y[i]], "suggested": classes[best],
                     "label_probability": round(float(p[y[i]]), 4), "suggested_probability": round(float(p[best]), 4),
                     **({"split": splits[i]} if splits is not None else {})})
    return rows


def label_issues(samples: Sequence, embeddings, name: Callable[[object], str], backbone: str | None = None,
                 groups: Sequence | None = None, seed: int = 0, splits: Sequence[str | None] | None = None) -> LabelIssues:
    """Likely label errors among `samples` (objects with .path, .label, .split) from their cached
    embeddings (features.extract.Embeddings; clean views). `name(path)` writes a path for the table;
    `splits` names each sample's split where .split does not (a run's own split)."""
    t0 = time.perf_counter()
    classes = sorted({s.label for s in samples})
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[s.label] for s in samples], int)
    result = LabelIssues(samples=len(samples), backbone=backbone)
    if len(classes) < 2:
        result.skipped = "fewer than two classes"
        return result
    clean = embeddings.clean()
    try:
        proba, result.folds = out_of_fold_probabilities(clean.vectors, clean.owner, y, len(classes), groups, seed=seed)
    except ValueError as exc:
        result.skipped = str(exc)
        return result
    result.oof_accuracy = round(float((proba.argmax(1) == y).mean()), 4)
    result.issues = issues_table(proba, y, classes, [name(s.path) for s in samples],
                                 splits if splits is not None else [s.split for s in samples])
    result.seconds = time.perf_counter() - t0
    return result


def summary_lines(record: dict, limit: int = 15) -> list[str]:
    """The text table: one line per likely label error, most suspicious first."""
    if record.get("skipped"):
        return [f"likely label errors: not sought ({record['skipped']})"]
    items = record["issues"]
    lines = [f"likely label errors: {len(items)} of {record['samples']} (out-of-fold accuracy "
             f"{record['out_of_fold_accuracy']:.3f}, {record['folds']} folds on {record['backbone']} embeddings, "
             f"{record['seconds']:.1f} s)"]
    for x in items[:limit]:
        lines.append(f"  {x['path']}: labelled {x['label']} ({x['label_probability']:.2f}), "
                     f"looks like {x['suggested']} ({x['suggested_probability']:.2f})")
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more (--json or --out for all)")
    return lines


def for_run(clf, name: Callable[[object], str], progress=None) -> LabelIssues:
    """The likely label errors of a trained classifier's training data (train + validation), on the
    embeddings its head was fitted on (the head-only model's when it was fine-tuned: those are cached).
    Never raises: a data hint must not cost the user the trained model."""
    t0 = time.perf_counter()
    try:
        out = _for_model(clf.head_only if getattr(clf, "head_only", None) is not None else clf, name)
    except Exception as exc:  # noqa: BLE001
        out = LabelIssues(skipped=f"label-issue search failed ({type(exc).__name__}: {exc})")
    out.seconds = time.perf_counter() - t0
    if out.issues and progress is not None:
        progress.log(f"likely label errors: {len(out.issues)} of {out.samples} training files (report.html lists them)")
    return out


def _for_model(model, name: Callable[[object], str]) -> LabelIssues:
    samples = [*model.train_samples, *model.val_samples]
    if not samples:
        return LabelIssues(backbone=model.spec.name, skipped="no training samples recorded with the model")
    if getattr(model, "network", None):  # small_cnn, --base-model: weights trained by this run
        return LabelIssues(samples=len(samples), backbone=model.spec.name,
                           skipped="its backbone was trained on these very samples, so their out-of-fold "
                                   "probabilities would be too confident; `edgemaker data inspect --label-issues` "
                                   "uses a pretrained one")
    return label_issues(samples, model.embed(samples, "extract train+val (label issues)"), name, model.spec.name,
                        seed=model.options.hparams.seed,
                        splits=["train"] * len(model.train_samples) + ["val"] * len(model.val_samples))
