"""The classifier's head: which kind (trained softmax or logistic-regression probe) and its settings,
chosen by k-fold cross-validation over train + val on the cached embeddings (heads/cv.py).

The refit: the chosen head is fitted again, the softmax head for the median of the folds' best epoch
counts with no early stopping (the same rule on every split it is fitted on). `edgemaker train`
refits on train + val (all the labelled data the run may learn from; HParams.refit_on_val), except
with --fine-tune, which compares its models on the held-out validation split (once it has decided
on head only, that model's head is refitted on train + val); everything else
(--auto, budget search, distillation, the Python API's default) refits on train, so validation
stays held out for what compares models on it afterwards.

Validation samples are embedded clean only, so in the folds of an "augmented views" candidate they
train on their clean rows (the training split's samples on their augmented views too).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.validate import Sample
from ..features.extract import Embeddings
from ..backbones.runtime import default_threads
from ..heads.cv import Candidate, CVSelection, cross_validate_heads, make_folds, map_fits, merge
from ..heads.probe import C_GRID, ProbeHead
from ..heads.selection import DEFAULTS, STAGES
from ..heads.softmax import SoftmaxHead
from .options import LARGE_FOR_CV, ClassifierOptions


# Part of every remembered head search's key (here and tasks/classifier.py): bump when the search's
# result changes outside SoftmaxHead (SoftmaxHead.VERSION covers its own fit). 2: patience in passes.
SEARCH_VERSION = 2


def head_for(options: ClassifierOptions, settings: dict | None = None, epochs: int | None = None, passes: int = 1):
    """The unfitted head for `options`; `settings` (chosen) fill what the options leave open. `passes`:
    how many times one epoch of its fit passes over each training sample (see passes_per_epoch)."""
    hp = options.hparams
    chosen = {**DEFAULTS, **hp.given(), **(settings or {})}
    if chosen.get("head") == "probe":
        return ProbeHead(C=float(chosen.get("C") or hp.probe_c or 1.0), class_weight=hp.class_weights,
                         random_state=hp.seed)
    return SoftmaxHead(
        epochs=epochs or hp.epochs, batch_size=hp.batch_size, learning_rate=hp.learning_rate, dropout=hp.dropout,
        label_smoothing=chosen["label_smoothing"], weight_decay=chosen["weight_decay"], class_weight=hp.class_weights,
        patience=max(1, round(hp.patience / passes)), random_state=hp.seed,
    )


def passes_per_epoch(options: ClassifierOptions, views: str) -> int:
    """How many times one epoch passes over each training sample when every view is a row of its own:
    1 on clean rows, 1 + the augmented views on augmented ones. Early stopping's patience
    (HParams.patience) counts such passes, not epochs: counted in epochs, an augmented head on
    caltech-hard40 whose best epoch was 2 trained on for 15 more (45 passes), a clean one for 15."""
    return 1 + options.augmentation.active_views if views == "augmented" else 1


def source_groups(samples: Sequence[Sample], pattern: str | None) -> list[str]:
    """One group per sample (a clip's windows are one sample's rows), or per source id: the first
    group (or the whole match) of `pattern` in the file name; a name without a match is its own group."""
    if not pattern:
        return [f"#{i}" for i in range(len(samples))]
    from ..data.tools.split import group_key

    rx = re.compile(pattern)
    return [key if (key := group_key(rx, Path(str(s.path)).name)) is not None else f"#{i}"
            for i, s in enumerate(samples)]


def _labels(samples: Sequence[Sample], emb: Embeddings) -> np.ndarray:
    return np.array([samples[i].label for i in emb.owner])


def _memo_key(options: ClassifierOptions, given: dict, emb: Embeddings, labels: np.ndarray, groups: list[str],
              mirror: Embeddings | None) -> str:
    h = hashlib.sha256(repr((SoftmaxHead.VERSION, STAGES, C_GRID, sorted(given.items()), options.hparams,
                             options.fine_tune.active, "cv", SEARCH_VERSION)).encode())
    extra = (mirror.vectors, mirror.owner) if mirror is not None else ()
    for a in (emb.vectors, emb.owner, emb.view, labels, *extra):
        h.update(str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    h.update("\n".join(groups).encode())
    return h.hexdigest()


def _memo_path(options: ClassifierOptions, key: str) -> Path:
    from ..paths import cache_dir

    return (options.cache_dir or cache_dir()) / "cv-selection" / f"{key}.json"


def _recall(path: Path) -> CVSelection | None:
    try:
        selection = CVSelection.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: cross-validate again
    selection.reused = True
    return selection


def _remember(path: Path, selection: CVSelection) -> None:
    from ..atomic import write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, selection.to_dict(with_oof=True))
    except OSError:
        pass  # a read-only cache only costs the next retrain its folds


def _key(settings: dict) -> tuple:
    return tuple(sorted(settings.items()))


def _search(selection: CVSelection, options: ClassifierOptions, given: dict, emb: Embeddings, labels: np.ndarray,
            folds, mirror: Embeddings | None) -> None:
    """The candidates: the softmax head's settings staged as heads/selection.py does (one setting at a
    time, the others at their best mean so far), and the probe at every C of the grid; with `mirror`,
    each also scored with flip averaging (the same fits, so it costs no training)."""
    tried: dict[tuple, tuple[dict, object]] = {}
    only_flip = options.hparams.flip_average == "on"
    workers = options.threads or default_threads()

    def run(*candidates: dict) -> list:
        """Cross-validate the candidates not tried yet, all their folds on one pool; each one's
        (settings, result), in the order given."""
        new = list({_key(c): c for c in candidates if _key(c) not in tried}.values())
        jobs = [((lambda c=c: head_for(options, c, passes=passes_per_epoch(options, c["views"]))), c["views"])
                for c in new]
        for settings, result in zip(new, cross_validate_heads(jobs, emb, labels, folds, mirror, workers)):
            if not only_flip:
                plain = {**settings, "flip_average": False} if mirror is not None else dict(settings)
                selection.candidates.append(Candidate(plain, result))
            if mirror is not None:
                selection.candidates.append(Candidate({**settings, "flip_average": True}, result.mirrored))
            tried[_key(settings)] = (settings, result.mirrored if only_flip else result)
        return [tried[_key(c)] for c in candidates]

    head = given.get("head")
    stages = [(name, values) for name, values in STAGES if name not in given]
    # Every candidate of a stage is the best so far with one setting changed, so a stage's candidates
    # are known before any of them is scored: each stage is one pool. The first stage's candidates do
    # not depend on anything scored, so they share a pool with the probe's grid (softmax fits first,
    # being the long ones, so the short probe fits fill in beside them).
    softmax = {"head": "softmax", **{k: v for k, v in {**DEFAULTS, **given}.items() if k in DEFAULTS}}
    first = []
    if head in (None, "softmax"):
        first += [softmax] + ([{**softmax, stages[0][0]: v} for v in stages[0][1]] if stages else [])
    if head in (None, "probe"):
        views = given.get("views", "clean")
        c_values = [given["C"]] if "C" in given else C_GRID
        first += [{"head": "probe", "views": views, "C": float(c)} for c in c_values]
    run(*first)
    if head in (None, "softmax"):
        best = run(softmax)[0]
        for name, values in stages:
            for candidate in run(*[{**best[0], name: value} for value in values]):
                if candidate[1].mean > best[1].mean:
                    best = candidate


def cv_select_head(options: ClassifierOptions, train: Sequence[Sample], validation: Sequence[Sample],
                   x_train: Embeddings, x_val: Embeddings, given: dict, mirrored: tuple | None = None):
    """(the refitted head, its CVSelection), or None when the data is too small for 2 folds.
    `mirrored`: (train, val) embeddings of the mirrored images, when flip averaging is a candidate."""
    start = time.perf_counter()
    samples = [*train, *validation]
    labels = np.array([s.label for s in samples])
    groups = source_groups(samples, options.hparams.cv_group_by)
    emb = merge(x_train, x_val)
    mirror = merge(*mirrored) if mirrored else None
    k = options.hparams.folds_for(len(samples))
    folds, how = make_folds(labels, groups, k, options.hparams.seed)
    if options.hparams.cv_folds is None and k == 3 and folds:
        how += f" (3 folds from {LARGE_FOR_CV} samples: each held-out fold is large enough, the search costs 3/5)"
    if not folds:
        return None
    path = _memo_path(options, _memo_key(options, given, emb, labels, groups, mirror))
    selection = _recall(path)
    if selection is None:
        selection = CVSelection(len(folds), how, classes=sorted(set(labels.tolist())))
        _search(selection, options, given, emb, labels, folds, mirror)
        selection.choose()
    on_val = options.hparams.refit_on_val and bool(len(validation)) and not options.fine_tune.active
    head = refit_chosen(options, selection, samples if on_val else list(train), emb if on_val else x_train, on_val)
    selection.seconds = time.perf_counter() - start
    if not selection.reused:
        _remember(path, selection)
    return head, selection


# A softmax head's refit: the weights of this many fits from different seeds (dropout masks, order,
# initialisation) averaged. The head is linear, so the mean of the weights gives the mean of the
# fits' logits: one matrix multiply still, with less of one seed's luck in it.
REFIT_SEEDS = 3


def fit_chosen(options: ClassifierOptions, chosen: dict, epochs: int | None, X: np.ndarray, y) -> object:
    """The chosen head fitted on (X, y) for `epochs` (no early stopping); a softmax head as the mean of
    REFIT_SEEDS fits' weights (seeds random_state + 1000 i), the first fit carrying the result. The
    seeds' fits run side by side as cross-validation's do (heads/cv.map_fits): each is seeded by
    itself, so the result is the same either way."""
    settings = {k: v for k, v in chosen.items() if k != "flip_average"}
    head = head_for(options, settings, epochs)
    if not isinstance(head, SoftmaxHead) or REFIT_SEEDS < 2:
        return head.fit(X, y)

    def fit_seed(i: int) -> SoftmaxHead:
        one = head_for(options, settings, epochs)
        one.random_state = head.random_state + 1000 * i
        return one.fit(X, y)

    heads = map_fits(fit_seed, range(REFIT_SEEDS), len(X), options.threads or default_threads())
    head = heads[0]
    head.coef_ = np.mean([h.coef_ for h in heads], axis=0).astype(np.float32)
    head.intercept_ = np.mean([h.intercept_ for h in heads], axis=0).astype(np.float32)
    return head


def refit_chosen(options: ClassifierOptions, selection: CVSelection, samples: Sequence[Sample], emb: Embeddings,
                 on_val: bool):
    """The chosen head fitted on `samples` (train, or train + val when `on_val`; `emb` their embeddings,
    augmented rows used only when the chosen views are) for the folds' epoch count, no early stopping;
    `selection` records what it was refitted on."""
    chosen = selection.chosen
    rows = emb if chosen.get("views") == "augmented" else emb.clean()
    head = fit_chosen(options, chosen, selection.epochs, rows.vectors, _labels(samples, rows))
    seeds = REFIT_SEEDS if isinstance(head, SoftmaxHead) else 1
    selection.refit_on_val = on_val
    selection.refit = (f"refitted on {'train + val' if on_val else 'train'}"
                       + (f" for {selection.epochs} epochs (median of the folds' best), no early stopping"
                          if selection.epochs else "")
                       + (f", the mean of {seeds} seeds' weights" if seeds > 1 else ""))
    return head


def resolved_hparams(options: ClassifierOptions, chosen: dict):
    """The options' HParams with the chosen head kind (and the probe's C) written in."""
    if "head" not in chosen:
        return options.hparams
    return replace(options.hparams, head=chosen["head"], probe_c=chosen.get("C"))
