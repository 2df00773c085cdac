"""Both audio embeddings together vs each alone, measured on cached features (docs/benchmarks.md).

For each audio backbone: a head on its window embeddings (what `edgemaker train` does) and one on
clip-pooled embeddings; then both backbones concatenated, pooled per clip and aligned per window
(each aisfx window with the mean of the Lite0 patches inside its time span). Validation and test
accuracy at clip level, so the question "would choosing the combination by validation help?" has
an answer per dataset.

    python bench/audio_combination.py ../shared/data/esc10-dev9
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgemaker.backbones import get_spec
from edgemaker.backbones.runtime import Backbone
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.evaluate.metrics import evaluate_predictions
from edgemaker.progress import SilentProgress
from edgemaker.tasks.classifier import AudioClassifier, embed_samples, make_head
from edgemaker.tasks.options import ClassifierOptions

NAMES = ("aisfx", "efficientnet_lite0_mel")
SPLITS = ("train", "val", "test")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pooled(emb) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding per (clip, view) -> (rows, owners)."""
    keys = emb.owner * 1000 + emb.view
    uniq, inverse = np.unique(keys, return_inverse=True)
    out = np.zeros((len(uniq), emb.vectors.shape[1]))
    np.add.at(out, inverse, emb.vectors)
    return (out / np.bincount(inverse)[:, None]).astype(np.float32), uniq // 1000


def aligned(ea, eb) -> tuple[np.ndarray, np.ndarray]:
    """Each aisfx window + the mean of the Lite0 patches lying inside its time span, both unit-length."""
    a, b = get_spec(NAMES[0]).audio, get_spec(NAMES[1]).audio
    rows, owners = [], []
    for key in np.unique(ea.owner * 1000 + ea.view):
        owner, view = divmod(int(key), 1000)
        wa = ea.vectors[(ea.owner == owner) & (ea.view == view)]
        wb = eb.vectors[(eb.owner == owner) & (eb.view == view)]
        if not len(wb):
            wb = eb.vectors[eb.owner == owner]
        starts = np.arange(len(wb)) * b.hop_samples / b.sample_rate
        for i, row in enumerate(wa):
            t0 = i * a.hop_samples / a.sample_rate
            inside = (starts >= t0 - 1e-6) & (starts + b.window_seconds <= t0 + a.window_seconds + 1e-6)
            patch = wb[inside].mean(0) if inside.any() else wb[min(len(wb) - 1, int(np.searchsorted(starts, t0)))]
            rows.append(np.hstack([unit(row), unit(patch)]))
            owners.append(owner)
    return np.array(rows, np.float32), np.array(owners)


def score(options, splits, x: dict, owners: dict) -> tuple[float, float]:
    """Clip-level (val, test) accuracy of a head fitted on x['train']; rows averaged per clip."""
    labels = {s: np.array([getattr(splits, s)[i].label for i in owners[s]]) for s in SPLITS}
    head = make_head(options).fit(x["train"], labels["train"], validation=(x["val"], labels["val"]))
    out = []
    for s in ("val", "test"):
        n = len(getattr(splits, s))
        proba = np.zeros((n, len(head.classes_)))
        np.add.at(proba, owners[s], head.predict_proba(x[s]))
        proba /= np.maximum(np.bincount(owners[s], minlength=n), 1)[:, None]
        out.append(evaluate_predictions([str(c) for c in head.classes_], [x.label for x in getattr(splits, s)], proba).accuracy)
    return out[0], out[1]


def main(data: Path) -> None:
    options = ClassifierOptions()
    cache = AudioClassifier.open_cache(options)
    splits = make_splits(validate_folder(data, cache=cache), SplitOptions(seed=0))
    emb = {}
    for name in NAMES:
        backbone = Backbone(get_spec(name), None, None)
        emb[name] = {s: embed_samples(backbone, getattr(splits, s), options.augmentation.active_views if s == "train" else 0,
                               options, cache, SilentProgress(), s)
                     for s in SPLITS}
    results = {}
    for name in NAMES:
        e = emb[name]
        results[f"{name}, windows (the product)"] = score(options, splits, {s: e[s].vectors for s in SPLITS},
                                                          {s: e[s].owner for s in SPLITS})
        p = {s: pooled(e[s]) for s in SPLITS}
        results[f"{name}, clip-pooled"] = score(options, splits, {s: p[s][0] for s in SPLITS}, {s: p[s][1] for s in SPLITS})
    pa = {s: pooled(emb[NAMES[0]][s]) for s in SPLITS}
    pb = {s: pooled(emb[NAMES[1]][s]) for s in SPLITS}
    results["both, clip-pooled, concatenated"] = score(
        options, splits, {s: np.hstack([unit(pa[s][0]), unit(pb[s][0])]) for s in SPLITS}, {s: pa[s][1] for s in SPLITS})
    al = {s: aligned(emb[NAMES[0]][s], emb[NAMES[1]][s]) for s in SPLITS}
    results["both, window-aligned, concatenated"] = score(options, splits, {s: al[s][0] for s in SPLITS},
                                                          {s: al[s][1] for s in SPLITS})
    print(f"{data}: {len(splits.val)} validation / {len(splits.test)} test clips")
    for name, (val, test) in results.items():
        print(f"  {name:40s} val {val:.3f}  test {test:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
