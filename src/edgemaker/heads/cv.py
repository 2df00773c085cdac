"""Head choices made by stratified k-fold cross-validation on cached embeddings.

Why: one validation split of a small dataset cannot tell candidates apart (one image of 275 decided
the views on Caltech-101), so every choice the cached embeddings allow is made on k folds of
train + val instead. Folds are over samples, grouped: all windows of a clip belong to one sample,
and files that share a source id (a recording cut into clips) share a group, so no fold is scored
on a near-copy of what it trained on.

The rule: each candidate's accuracy over the folds (mean and standard deviation); among the
candidates whose mean is within one standard error of the best mean (the one-standard-error rule,
Hastie, Tibshirani & Friedman 7.10), the simplest wins: the logistic-regression probe before the
trained softmax head, clean views before augmented ones. A difference smaller than the folds' own
spread is no evidence for the more complex candidate. Within one kind (the probe's C, the softmax
head's weight decay and smoothing) the best mean wins, then the lower log loss: over 30 splits of
three photo sets and seven seeded few-shot subsets of them, preferring the strongest
regularisation within one standard error, or the lowest log loss, chose probes that scored lower
on test (docs/benchmarks.md).

For other modules: `cross_validate_head` runs k-fold CV of any head on cached embeddings and
returns the out-of-fold probabilities (one row per sample, in the samples' order); `CVSelection`
keeps the chosen candidate's out-of-fold probabilities (e.g. for finding likely label errors).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..features.extract import Embeddings
from ..parallel import can_fork, forked_map
from .softmax import one_blas_thread

Folds = list[tuple[np.ndarray, np.ndarray]]  # (training sample indices, held-out sample indices)
# Forking two workers costs 0.05-0.2 s (more for a larger parent process); a fit costs about 0.1 ms a
# row. Below this many rows x fits, a call runs on threads: the forks would cost more than they save.
FORK_MIN_ROW_FITS = 10_000
RULE = ("one-standard-error: the simplest candidate whose mean fold accuracy is within one standard error "
        "(std / sqrt(folds)) of the best mean; simplest = without flip averaging, then probe < softmax head on "
        "clean views < on augmented views; within one kind the best mean, then the lowest log loss")


def make_folds(labels: Sequence[str], groups: Sequence[str], k: int, seed: int) -> tuple[Folds, str]:
    """Stratified, grouped k folds over samples (scikit-learn's StratifiedGroupKFold, shuffled with
    `seed`). k shrinks to the fewest groups any class has; below 2 there is nothing to cross-validate
    and no folds are returned. The string says how the folds were made."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    per_class = min(len(set(groups[labels == c].tolist())) for c in set(labels.tolist()))
    k_used = min(k, per_class)
    if k_used < 2:
        return [], f"no cross-validation: a class has {per_class} group(s) (at least 2 are needed)"
    splitter = StratifiedGroupKFold(n_splits=k_used, shuffle=True, random_state=seed)
    folds = [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]
    note = (f"stratified {k_used}-fold over {len(labels)} samples in {len(set(groups.tolist()))} groups, seed {seed}"
            + (f" ({k} asked; a class has only {per_class} groups)" if k_used < k else ""))
    return folds, note


def merge(first: Embeddings, second: Embeddings) -> Embeddings:
    """Rows of two sample lists as one (the second's owners follow the first's)."""
    return Embeddings(np.concatenate([first.vectors, second.vectors]),
                      np.concatenate([first.owner, second.owner + first.n_samples]),
                      np.concatenate([first.view, second.view]), first.n_samples + second.n_samples)


def _rows(emb: Embeddings, samples: np.ndarray, clean: bool) -> np.ndarray:
    keep = np.isin(emb.owner, samples)
    return keep & (emb.view == 0) if clean else keep


@dataclass
class CVResult:
    """One head's k-fold run: per-fold accuracy and log loss (sample level), out-of-fold probabilities."""

    accuracies: list[float]
    losses: list[float]
    oof: np.ndarray  # (samples, classes) float32, classes in sorted order
    best_epochs: list[int]
    seconds: float
    mirrored: CVResult | None = None  # the same fits scored on the mean of each image's and its mirror's probabilities

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    @property
    def stderr(self) -> float:
        return self.std / np.sqrt(len(self.accuracies))


def cross_validate_head(make_head: Callable[[], object], emb: Embeddings, labels: Sequence[str], folds: Folds,
                        views: str = "clean", mirror: Embeddings | None = None, workers: int = 1) -> CVResult:
    """k-fold CV of a head on cached embeddings. `make_head()`: an unfitted head (SoftmaxHead,
    ProbeHead: `fit(X, y, validation=...)`, `predict_proba`, `classes_`, `best_epoch_`); `emb`: the
    samples' rows (views > 0 are augmented); `labels`: one per sample. Each fold trains on its
    training samples' rows (their augmented views too when `views` is "augmented"), early-stops on
    the held-out samples' clean rows (a SoftmaxHead; the epoch count is recorded) and scores them
    at sample level (a clip is the mean of its windows). `mirror`: the samples' mirrored clean rows;
    the same fits are then also scored with flip averaging (`CVResult.mirrored`). `workers`: threads
    the folds are fitted on (see `cross_validate_heads`)."""
    return cross_validate_heads([(make_head, views)], emb, labels, folds, mirror, workers)[0]


def cross_validate_heads(jobs: Sequence[tuple[Callable[[], object], str]], emb: Embeddings, labels: Sequence[str],
                         folds: Folds, mirror: Embeddings | None = None, workers: int = 1) -> list[CVResult]:
    """`cross_validate_head` for several (make_head, views) at once, one CVResult each, with every
    (head, fold) fit on `workers` forked processes (Linux; threads elsewhere). Why processes: a
    head's fit is thousands of small numpy calls on small matrices (BLAS held to one thread) and
    holds the GIL between them: on 2 cores two threads cut the wall time by about 10%, two
    processes by about a quarter (a fresh choice on cached caltech-hard40: 13.0 -> 9.6-10.2 s of
    training). Each fit is seeded by its head alone, so the results do not depend on `workers` or
    on the order the fits finish in."""
    labels = np.asarray(labels)
    classes = np.array(sorted(set(labels.tolist())))
    tasks = [(j, f) for j in range(len(jobs)) for f in range(len(folds))]

    def fit(task: tuple[int, int]):
        j, f = task
        make_head, views = jobs[j]
        t0 = time.perf_counter()
        out = _fit_fold(make_head(), emb, labels, classes, folds[f], views, mirror)
        return out, time.perf_counter() - t0

    done = map_fits(fit, tasks, len(emb.vectors), workers)
    results = []
    for j in range(len(jobs)):
        oof = np.zeros((len(labels), len(classes)), np.float32)
        oof_mirrored = np.zeros_like(oof)
        epochs, seconds = [], 0.0
        for (jj, f), ((probs, mirrored, epoch), took) in zip(tasks, done):
            if jj != j:
                continue
            test_idx = folds[f][1]
            oof[test_idx] = probs
            if mirrored is not None:
                oof_mirrored[test_idx] = mirrored
            epochs.append(epoch)
            seconds += took
        result = CVResult(*_fold_scores(oof, labels, classes, folds), oof, epochs, seconds)
        if mirror is not None:
            result.mirrored = CVResult(*_fold_scores(oof_mirrored, labels, classes, folds), oof_mirrored, epochs, 0.0)
        results.append(result)
    return results


def map_fits(fn: Callable, items: Sequence, rows: int, workers: int) -> list:
    """[fn(item) for item in items], where each item is a head's fit on `rows` rows: on `workers`
    forked processes when there is enough work (rows x fits >= FORK_MIN_ROW_FITS; Linux), else on
    threads (which overlap only the fits' arithmetic), else in turn. BLAS stays on one thread. Each fit
    must be seeded by itself, so the results do not depend on where it ran."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    with one_blas_thread():  # held across the pool: the fits' own entries then leave the limit alone
        if workers > 1 and len(items) > 1 and can_fork() and rows * len(items) >= FORK_MIN_ROW_FITS:
            import sklearn.linear_model  # noqa: F401 - imported once here, not once in every child

            return forked_map(fn, items, workers)
        if workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
                return list(pool.map(fn, items))
        return [fn(item) for item in items]


def _fit_fold(head, emb: Embeddings, labels: np.ndarray, classes: np.ndarray, fold: tuple[np.ndarray, np.ndarray],
              views: str, mirror: Embeddings | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """One fold's fit: the held-out samples' probabilities (rows in the fold's held-out order, columns
    in `classes` order), the same with flip averaging (or None) and the head's best epoch."""
    train_idx, test_idx = fold
    column = {c: i for i, c in enumerate(classes.tolist())}
    fit_rows = _rows(emb, train_idx, views != "augmented")
    test_rows = _rows(emb, test_idx, True)
    x_test, y_test = emb.vectors[test_rows], labels[emb.owner[test_rows]]
    y_fit = labels[emb.owner[fit_rows]]
    seen = np.isin(y_test, y_fit)  # a class all of whose groups are held out cannot be early-stopped on
    head.fit(emb.vectors[fit_rows], y_fit, validation=(x_test[seen], y_test[seen]))
    held = Embeddings(x_test, emb.owner[test_rows], emb.view[test_rows], len(labels))
    cols = [column[c] for c in np.asarray(head.classes_).tolist()]
    probs = np.zeros((len(test_idx), len(classes)), np.float32)
    probs[:, cols] = held.aggregate(head.predict_proba(x_test))[test_idx]
    mirrored = None
    if mirror is not None:
        m_rows = np.isin(mirror.owner, test_idx)
        m_held = Embeddings(mirror.vectors[m_rows], mirror.owner[m_rows], mirror.view[m_rows], len(labels))
        mirrored = np.zeros_like(probs)
        mirrored[:, cols] = (probs[:, cols] + m_held.aggregate(head.predict_proba(m_held.vectors))[test_idx]) / 2
    return probs, mirrored, int(head.best_epoch_)


def _fold_scores(oof: np.ndarray, labels: np.ndarray, classes: np.ndarray, folds: Folds) -> tuple[list, list]:
    """Per held-out fold: accuracy and mean log loss of the out-of-fold probabilities."""
    truth = np.searchsorted(classes, labels)
    accuracies, losses = [], []
    for _, test_idx in folds:
        p, t = oof[test_idx], truth[test_idx]
        accuracies.append(float((p.argmax(1) == t).mean()))
        losses.append(float(-np.log(np.clip(p[np.arange(len(t)), t], 1e-12, None)).mean()))
    return accuracies, losses


@dataclass
class Candidate:
    settings: dict  # head ("softmax" or "probe"), views, and the head's own settings
    result: CVResult

    def to_dict(self) -> dict:
        r = self.result
        return {**self.settings, "mean": round(r.mean, 4), "std": round(r.std, 4),
                "fold_accuracies": [round(a, 4) for a in r.accuracies], "mean_loss": round(float(np.mean(r.losses)), 4),
                "best_epochs": r.best_epochs, "seconds": round(r.seconds, 2)}


def simplicity(settings: dict) -> tuple:
    """Sort key, simplest first: without flip averaging (half the inference) before with it; the
    probe, then the softmax head on clean views, then on augmented views. Settings within one kind
    (C, weight decay, smoothing) are not ranked by simplicity: among those the better mean wins,
    then the lower log loss."""
    flip = int(bool(settings.get("flip_average")))
    if settings.get("head") == "probe":
        return (flip, 0, 0)
    return (flip, 1, int(settings.get("views") == "augmented"))


def one_standard_error(means: Sequence[float], stderrs: Sequence[float], keys: Sequence[tuple],
                       losses: Sequence[float] | None = None) -> int:
    """Index of the simplest (smallest key) candidate whose mean is within one standard error of the
    best mean; among equally simple ones the best mean, then the lowest loss, then the earliest."""
    best = int(np.argmax(means))
    floor = means[best] - stderrs[best]
    eligible = [i for i, m in enumerate(means) if m >= floor - 1e-12]
    return min(eligible, key=lambda i: (keys[i], -means[i], losses[i] if losses is not None else 0.0, i))


@dataclass
class CVSelection:
    """The candidates, their fold scores and the one the rule chose."""

    folds: int
    how: str
    candidates: list[Candidate] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)
    best: dict = field(default_factory=dict)  # the candidate with the best mean (may differ from chosen)
    epochs: int | None = None  # the softmax refit's epoch count (median of the folds' best epochs)
    refit: str = ""
    seconds: float = 0.0
    reused: bool = False
    classes: list[str] = field(default_factory=list)
    refit_on_val: bool = False  # the shipped head saw validation too (the int8 checks then use a train-only head)

    @property
    def chosen_result(self) -> CVResult:
        return next(c.result for c in self.candidates if c.settings == self.chosen)

    @property
    def oof_probabilities(self) -> np.ndarray:
        """The chosen candidate's out-of-fold probabilities, one row per train + val sample (in that
        order), columns in `classes` order."""
        return self.chosen_result.oof

    def choose(self) -> None:
        cands = self.candidates
        i = one_standard_error([c.result.mean for c in cands], [c.result.stderr for c in cands],
                               [simplicity(c.settings) for c in cands], [float(np.mean(c.result.losses)) for c in cands])
        self.chosen = dict(cands[i].settings)
        self.best = dict(max(cands, key=lambda c: c.result.mean).settings)
        epochs = cands[i].result.best_epochs
        self.epochs = max(1, int(np.median(epochs))) if self.chosen.get("head") != "probe" else None

    def summary(self) -> str:
        r = self.chosen_result
        what = ", ".join(f"{k} {v}" for k, v in self.chosen.items())
        how = "the same search on the same embeddings earlier, reused" if self.reused else \
            f"{len(self.candidates)} candidates x {self.folds} folds, {self.seconds:.1f} s"
        return (f"head by {self.folds}-fold cross-validation ({how}): {what} "
                f"(accuracy {r.mean:.3f} ± {r.std:.3f}; {self.refit})")

    def to_dict(self, with_oof: bool = False) -> dict:
        d = {"folds": self.folds, "how": self.how, "rule": RULE, "chosen": self.chosen, "best_mean": self.best,
             "epochs": self.epochs, "refit": self.refit, "seconds": round(self.seconds, 2), "reused": self.reused,
             "summary": self.summary(), "classes": self.classes, "candidates": [c.to_dict() for c in self.candidates]}
        if with_oof:  # the chosen candidate's only: the others' are not needed once the choice is made
            d["oof"] = np.round(self.oof_probabilities, 5).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CVSelection:
        keys = ("mean", "std", "fold_accuracies", "mean_loss", "best_epochs", "seconds")
        cands = []
        for c in d["candidates"]:
            settings = {k: v for k, v in c.items() if k not in keys}
            oof = np.asarray(d["oof"] if settings == d["chosen"] else np.zeros((0, len(d["classes"]))), np.float32)
            result = CVResult(list(c["fold_accuracies"]), [c["mean_loss"]] * len(c["fold_accuracies"]), oof,
                              list(c["best_epochs"]), c["seconds"])
            cands.append(Candidate(settings, result))
        return cls(d["folds"], d["how"], cands, dict(d["chosen"]), dict(d["best_mean"]), d["epochs"], d["refit"],
                   d["seconds"], False, list(d["classes"]))
