"""The budget search's finalists re-ranked by k-fold cross-validation over train + val.

Why: on a small validation split the best pretrained cuts tie (caltech-dev10, 1 MB / 256 KB: five
cuts at 1.000 of 94 validation images), and the tie was then broken by validation loss alone. The
FINALISTS best frozen candidates by screening rank get one more, cheaper-than-training look: the
screening head (its fixed settings) cross-validated on their cached embeddings of train + val
(heads/cv.py, the folds the head choice uses). The winner is the best mean fold accuracy, then the
lower mean log loss, then less flash. Test is never read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.validate import Sample
from .options import ClassifierOptions

FINALISTS = 5


def finalists(candidates, rank, n: int = FINALISTS) -> list:
    """The best `n` fitting frozen-trunk candidates by screening rank."""
    frozen = [c for c in candidates if c.fits and c.width is None and c.val_accuracy is not None]
    return sorted(frozen, key=rank, reverse=True)[:n]


def cross_validate(embed, train: Sequence[Sample], validation: Sequence[Sample], screen: ClassifierOptions,
                   k: int) -> dict:
    """{folds, mean, std, mean_loss, fold_accuracies, seconds} of the screening head over train + val in
    `k` folds ({} when the data is too small). `embed(samples, views, desc)`: the candidate's cached Embeddings."""
    from ..backbones.runtime import default_threads
    from ..heads.cv import cross_validate_head, make_folds, merge
    from .head_choice import head_for, passes_per_epoch, source_groups

    samples = [*train, *validation]
    views = screen.augmentation.active_views
    emb = merge(embed(train, views, "cached train"), embed(validation, 0, "cached val"))
    labels = [s.label for s in samples]
    folds, _ = make_folds(labels, source_groups(samples, screen.hparams.cv_group_by),
                          k, screen.hparams.seed)
    if not folds:
        return {}
    rows = "augmented" if views else "clean"
    result = cross_validate_head(lambda: head_for(screen, passes=passes_per_epoch(screen, rows)), emb, labels, folds,
                                 rows, workers=screen.threads or default_threads())
    return {"folds": len(folds), "mean": round(result.mean, 4), "std": round(result.std, 4),
            "mean_loss": round(float(np.mean(result.losses)), 4),
            "fold_accuracies": [round(a, 4) for a in result.accuracies], "seconds": round(result.seconds, 2)}


def cv_rank(c) -> tuple:
    """Best mean fold accuracy, then lower mean loss, then less flash (no CV: last)."""
    if not c.cv:
        return (-1.0, 0.0, 0)
    return (c.cv["mean"], -c.cv["mean_loss"], -c.predicted["flash_bytes"])
