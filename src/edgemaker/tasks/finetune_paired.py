"""`--fine-tune auto` on small sets: fine-tuning is kept only when it beats head-only across folds.

On a small validation split (cars-like data: 19 images) one image decides, so the choice is made by
stratified k-fold over train+val instead: in every fold a head-only model and a fine-tuned one are
trained on the same fold-train samples and scored on the same held-out samples, and the fine-tuned
recipe is accepted when the mean paired gain is positive and larger than its standard error. That
error is taken over the held-out samples (each one's fine-tuned minus head-only correctness, every
sample held out once): a few hundred paired outcomes measure the noise, where the spread of 3 fold
means (2 degrees of freedom) can be far too small or large by chance. The fold means are kept as evidence.

The recipe is a practitioner's: start from the trained head (the warm-up), train the last K blocks
with it for a fixed number of epochs on augmented views (zoomed and shifted crops, flips), BatchNorm
statistics frozen, AdamW (the head's learning rate, TRUNK_LR_SCALE of it for the blocks), cosine decay.
No early stopping: the folds judge the recipe, so the final refit on the training split runs it as is.

Activations entering block n-K are computed once per sample and view and cached (features/activations.py):
an epoch then costs only the last K blocks, whereas running the frozen stem live would repeat the
whole prefix every epoch of every fold (measured in the record: `activations.seconds_per_row` vs
`seconds_per_epoch_row`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..features.activations import ActivationStore, PrefixRunner, extract_activations, prefix_onnx
from ..features.extract import Embeddings, cache_tag, default_silence, silence_tag
from ..heads.probe import ProbeHead
from ..heads.softmax import SoftmaxHead
from ..progress import Progress
from ..training.loop import descend, seeded, state_copy, train_epochs
from .finetune import (advance, block_count, head_targets, check_supported, fine_tune, fine_tuned_model, keep_head_only,
                       prefix_module, tail_module, trunk)
from .options import augmentation_for

HEAD_LR_SCALE = 1.0  # the head's learning rate (its own training's) ...
TRUNK_LR_SCALE = 0.3  # ... and a lower one for the pretrained blocks
WEIGHT_DECAY = 1e-2  # AdamW's usual decoupled decay


def paired_path_reason(clf, baseline) -> str | None:
    """Why the paired (k-fold) path runs, or None for the single-split path."""
    ft = clf.options.fine_tune
    n_val = len(clf.val_samples)
    if ft.depth != "auto":
        return None
    if baseline is not None and baseline is not clf and baseline.spec.name != clf.spec.name:
        return None  # the head-only winner is another backbone: folds of this one cannot pair with it
    if n_val >= ft.paired_below_val:
        return None
    return (f"{n_val} validation samples (< {ft.paired_below_val}): one split cannot see a few points' gain, "
            f"so {ft.paired_folds}-fold paired comparison over train+val")


def single_split_reason(clf, baseline) -> str:
    ft = clf.options.fine_tune
    if ft.depth != "auto":
        return f"depth {ft.depth} given: trained with early stopping on the validation split"
    if baseline is not None and baseline is not clf and baseline.spec.name != clf.spec.name:
        return f"the head-only winner is {baseline.spec.name}, not {clf.spec.name}: compared on the validation split"
    return (f"{len(clf.val_samples)} validation samples (>= {ft.paired_below_val}): one split is large enough "
            "to see the gain, so the cheaper single-split path")


def fine_tune_auto(clf, progress: Progress, baseline=None):
    """`--fine-tune`: the paired k-fold path on small validation splits, else tasks/finetune.py's."""
    reason = paired_path_reason(clf, baseline)
    if reason is None:
        model = fine_tune(clf, progress, baseline)
        model.fine_tune.update(path="single split", path_reason=single_split_reason(clf, baseline))
        return model
    return paired_fine_tune(clf, progress, baseline or clf, reason)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per sample: each class shuffled and dealt round-robin, so every fold holds its share."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)  # classes smaller than k do not all land in fold 0
    return folds


def pooled_features(tail, acts: Embeddings, batch: int = 64) -> np.ndarray:
    """The frozen tail's pooled embedding (what the head sees) of every activation row."""
    import torch

    tail.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(acts.vectors), batch):
            a = torch.from_numpy(acts.vectors[i : i + batch].astype(np.float32))
            for block in tail.blocks:
                a = block(a)
            out.append(tail.head(a).mean(dim=(2, 3)).numpy())
    return np.concatenate(out)


def subset(acts: Embeddings, samples: np.ndarray, max_view: int) -> Embeddings:
    """Rows of `samples` (indices into acts' samples) with view <= max_view, owners renumbered."""
    renumber = np.full(acts.n_samples, -1)
    renumber[samples] = np.arange(len(samples))
    keep = (renumber[acts.owner] >= 0) & (acts.view <= max_view)
    return Embeddings(acts.vectors[keep], renumber[acts.owner[keep]], acts.view[keep], len(samples))


def train_recipe(tail, x: Embeddings, y: np.ndarray, epochs: int, hp, class_weights: np.ndarray | None,
                 seed: int) -> float:
    """Fixed-epoch fine-tuning of `tail` on rows `x` (one random view per sample per epoch; `y` per
    sample): AdamW, blocks at TRUNK_LR_SCALE of the head's rate, cosine decay to zero, BatchNorm in
    eval mode. -> seconds per trained row."""
    import torch

    rng = seeded(seed, with_torch=True)
    head = list(tail.fc.parameters())
    body = [p for n, p in tail.named_parameters() if not n.startswith("fc.")]
    lr = hp.learning_rate
    opt = torch.optim.AdamW([{"params": body, "lr": lr * TRUNK_LR_SCALE}, {"params": head, "lr": lr * HEAD_LR_SCALE}],
                            weight_decay=WEIGHT_DECAY)
    steps = epochs * math.ceil(x.n_samples / hp.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    weight = None if class_weights is None else torch.from_numpy(class_weights.astype(np.float32))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing or 0.0)
    n_views = int(x.view.max(initial=0)) + 1
    t0, rows = time.perf_counter(), 0
    tail.eval()
    tail.drop.train()

    def train_epoch(epoch: int) -> None:
        nonlocal rows
        pick = rng.integers(0, n_views, x.n_samples)
        order = rng.permutation(np.flatnonzero(x.view == pick[x.owner]))
        for start in range(0, len(order), hp.batch_size):
            idx = order[start : start + hp.batch_size]
            logits = tail(torch.from_numpy(x.vectors[idx].astype(np.float32)))
            descend(opt, loss_fn(logits, torch.from_numpy(y[x.owner[idx]])), sched)
            rows += len(idx)

    train_epochs(epochs, train_epoch)  # fixed epochs: the folds judge the recipe, no early stopping
    tail.eval()
    return (time.perf_counter() - t0) / max(rows, 1)


def tail_correct(tail, x: Embeddings, y: np.ndarray) -> np.ndarray:
    """Per sample, whether `tail` is right (mean of a sample's window probabilities) on clean rows."""
    import torch

    tail.eval()
    with torch.no_grad():
        logits = torch.cat([tail(torch.from_numpy(x.vectors[i : i + 64].astype(np.float32)))
                            for i in range(0, len(x.vectors), 64)])
    proba = x.aggregate(torch.softmax(logits, 1).numpy().astype(np.float64))
    return proba.argmax(1) == y


def tail_accuracy(tail, x: Embeddings, y: np.ndarray) -> float:
    """Sample-level accuracy of `tail` on clean rows."""
    return float(tail_correct(tail, x, y).mean())


def decide(gains, differences: np.ndarray | None = None) -> tuple[bool, float, float, float, str]:
    """(accept, mean, std, standard error, reason): accept when the mean paired gain is > 0 and > its SE.

    `gains`: one per fold; or, with `differences` (per held-out sample, fine-tuned right minus head-only
    right: -1, 0 or 1), the mean and its error are those of the samples' differences instead."""
    g = np.asarray(gains if differences is None else differences, np.float64)
    mean = float(g.mean())
    std = float(g.std(ddof=1)) if len(g) > 1 else 0.0
    se = std / math.sqrt(len(g))
    what = "mean paired gain" if differences is None else f"mean paired gain over {len(g)} held-out samples"
    if mean <= 0:
        return False, mean, std, se, f"{what} {mean:+.4f} is not positive"
    if mean <= se:
        return False, mean, std, se, f"{what} {mean:+.4f} does not exceed its standard error {se:.4f}"
    return True, mean, std, se, f"{what} {mean:+.4f} > 0 and exceeds its standard error {se:.4f}"


def paired_samples(differences: np.ndarray) -> dict:
    """The sample-level evidence: how many held-out samples fine-tuning fixed and broke, mean and SE."""
    accept, mean, _, se, why = decide([], differences)
    return {"n": int(len(differences)), "fixed": int((differences > 0).sum()), "broken": int((differences < 0).sum()),
            "mean_gain": round(mean, 4), "se_gain": round(se, 4), "accepted": accept, "reason": why}


def can_still_gain(gains: list[float], remaining_head_only: list[float]) -> bool:
    """Whether the mean paired gain can still be positive: the folds not yet run gain at most the
    head-only model's error on them."""
    return float(np.mean(gains + [1.0 - a for a in remaining_head_only])) > 0


def _fold_head(hp, epochs: int, feats: np.ndarray, labels: np.ndarray, like=None):
    """Head-only as create() trains it, on fold-train rows: the probe with its chosen C where `like` (the
    real head) is one, else the softmax head for the epoch count the real head stopped at."""
    if isinstance(like, ProbeHead):
        return ProbeHead(**like.get_params()).fit(feats, labels)
    return SoftmaxHead(epochs=epochs, batch_size=hp.batch_size, learning_rate=hp.learning_rate, dropout=hp.dropout,
                       label_smoothing=hp.label_smoothing or 0.0, weight_decay=hp.weight_decay or 0.0,
                       class_weight=hp.class_weights, random_state=hp.seed).fit(feats, labels)


def paired_fine_tune(clf, progress: Progress, baseline, reason: str):
    """Paired k-fold comparison of head-only vs each depth's recipe; the best depth, if accepted, is
    refit on the training split from the trained head and returned as a model, else `baseline`."""
    import torch

    start_time, start_cpu = time.perf_counter(), time.process_time()
    opts = clf.options
    ft, hp = opts.fine_tune, opts.hparams
    spec = clf.spec
    depths = sorted({k for k in ft.paired_depths if k > 0})
    check_supported(spec, depths)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    n_blocks = block_count(spec)
    cut = n_blocks - max(depths)
    samples = list(clf.train_samples) + list(clf.val_samples)
    n_train = len(clf.train_samples)

    views = ft.paired_views
    augmentation = augmentation_for(spec, opts) if views else None
    silence = default_silence(spec, opts.silence)
    extra = "|".join(filter(None, (silence_tag(silence), f"cut{cut}")))
    t0 = time.perf_counter()
    run = PrefixRunner(prefix_onnx(spec, cut, prefix_module, opts.cache_dir), opts.threads)
    store = ActivationStore(clf.cache.path) if clf.cache is not None else None
    try:
        acts = extract_activations(samples, views, augmentation, spec,
                                   lambda v: cache_tag(clf.backbone, augmentation, v, extra), run, store, progress,
                                   silence, f"activations train+val, {views} views (cut {cut})")
    finally:
        if store is not None:
            store.close()
    activations_s = time.perf_counter() - t0

    classes, class_weights, (y,) = head_targets(clf, samples)
    head_views = opts.augmentation.active_views  # the rows the head-only model trains on (resolved in create())
    head_epochs = max(int(getattr(clf.head, "best_epoch_", 0) or hp.epochs), 1)
    epochs = ft.paired_epochs
    folds = stratified_folds(y, ft.paired_folds, hp.seed)

    net = trunk(spec)
    original = state_copy(net)
    results = []
    for k in depths:
        net.load_state_dict(original)
        start = n_blocks - k
        x = advance(net, acts, cut, start)
        frozen = tail_module(net, start, clf.head.coef_, clf.head.intercept_, hp.dropout)
        feats = pooled_features(frozen, x)
        heads = []  # every fold's head-only model first: cheap, and it bounds what fine-tuning can gain
        for f in range(ft.paired_folds):
            fit_idx, held_idx = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            rows = _rows(x, fit_idx, head_views)
            head = _fold_head(hp, head_epochs, feats[rows], np.array(classes)[y[x.owner[rows]]], clf.head)
            held = subset(x, held_idx, 0)
            proba = held.aggregate(head.predict_proba(feats[_rows(x, held_idx, 0)]).astype(np.float64))
            right = proba.argmax(1) == y[held_idx]
            heads.append((fit_idx, held_idx, held, head, float(right.mean()), right))
        per_fold: list[dict] = []
        differences = []  # per held-out sample of the folds run: fine-tuned right - head-only right
        futile = None
        for f, (fit_idx, held_idx, held, head, head_acc, head_right) in enumerate(heads):
            record = {"fold": f, "fit": int(len(fit_idx)), "held_out": int(len(held_idx)),
                      "head_only": round(head_acc, 4), "fine_tuned": None, "gain": None}
            per_fold.append(record)
            if futile or not can_still_gain([r["gain"] for r in per_fold[:-1]], [h[4] for h in heads[f:]]):
                futile = futile or (f"stopped after {f} of {ft.paired_folds} folds: even right on every remaining "
                                    "held-out sample, the mean paired gain could not be positive")
                continue
            t1 = time.perf_counter()
            net.load_state_dict(original)
            tail = tail_module(net, start, head.coef_, head.intercept_, hp.dropout)
            per_row = train_recipe(tail, subset(x, fit_idx, views), y[fit_idx], epochs, hp, class_weights, hp.seed + f)
            tuned_right = tail_correct(tail, held, y[held_idx])
            differences.append(tuned_right.astype(np.int64) - head_right.astype(np.int64))
            ft_acc = float(tuned_right.mean())
            record.update(fine_tuned=round(ft_acc, 4), gain=round(ft_acc - head_acc, 4),
                          seconds=round(time.perf_counter() - t1, 2), seconds_per_epoch_row=round(per_row, 5))
            progress.log(f"fine-tune last {k} block(s), fold {f + 1}/{ft.paired_folds}: head only {head_acc:.4f}, "
                         f"fine-tuned {ft_acc:.4f} ({record['seconds']:.1f} s)")
        done = [r for r in per_fold if r["gain"] is not None]
        _, mean, std, se, _ = decide([r["gain"] for r in done]) if done else (False, 0.0, 0.0, 0.0, "")
        samples_record = paired_samples(np.concatenate(differences)) if differences else None
        accept, why = (samples_record["accepted"], samples_record["reason"]) if samples_record else (False, "")
        results.append({"k": k, "folds": per_fold,
                        "mean_head_only": round(float(np.mean([r["head_only"] for r in per_fold])), 4),
                        "mean_fine_tuned": round(float(np.mean([r["fine_tuned"] for r in done])), 4) if done else None,
                        "mean_gain": round(mean, 4), "std_gain": round(std, 4), "se_gain": round(se, 4),
                        "paired_samples": samples_record,
                        "accepted": accept and not futile, "reason": futile or why})
    best = max(results, key=lambda r: (r["accepted"], r["mean_gain"]))
    chosen = best["k"] if best["accepted"] else 0
    base_acc = baseline.evaluate(clf.val_samples).accuracy if clf.val_samples else None
    report = {
        "requested": ft.depth, "path": "paired folds", "path_reason": reason, "chosen_k": chosen,
        "blocks": n_blocks, "cut": cut, "augmentation": f"{views} views" if views else "clean",
        "recipe": {"epochs": epochs, "views": views, "head_lr": hp.learning_rate * HEAD_LR_SCALE,
                   "trunk_lr": hp.learning_rate * TRUNK_LR_SCALE, "weight_decay": WEIGHT_DECAY,
                   "schedule": "cosine", "batchnorm": "frozen statistics", "start": "the trained head",
                   "head_only": "probe" if isinstance(clf.head, ProbeHead) else "softmax",
                   "head_only_epochs": None if isinstance(clf.head, ProbeHead) else head_epochs},
        "paired": {"folds": ft.paired_folds, "samples": len(samples), "depths": results,
                   "decision": "fine-tuned" if chosen else "head only", "reason": best["reason"]},
        "candidates": [],
        "activations": {"computed": run.calls, "reused": len(acts.vectors) - run.calls,
                        "seconds": round(activations_s, 2),
                        "seconds_per_row": round(activations_s / max(run.calls, 1), 5) if run.calls else None},
        "backbone": spec.name, "head_only_backbone": baseline.spec.name,
        "head_only": {"val_accuracy": round(base_acc, 4) if base_acc is not None else None},
    }
    progress.log(f"fine-tune: {report['paired']['decision']} ({best['reason']}, last {best['k']} blocks, "
                 f"{ft.paired_folds} folds)")
    if not chosen:
        model = keep_head_only(baseline, report, base_acc or 0.0, start_time, progress)
        report["cpu_s"] = round(time.process_time() - start_cpu, 2)  # on a shared machine, the cost itself
        return model

    # Refit the accepted recipe from the trained head, on the training split: validation stays held out
    # from the fine-tuned blocks, so that the int8 checks judge them on images they never saw. (Refitted
    # on train + val, a cars-dev10 model's int8 file disagreed with float on 17% of test while validation,
    # memorised by the blocks, showed 98% agreement: its "first conv in float" route was chosen on it.)
    net.load_state_dict(original)
    start = n_blocks - chosen
    train_idx = np.arange(n_train)
    x = advance(net, subset(acts, train_idx, views), cut, start)
    tail = tail_module(net, start, clf.head.coef_, clf.head.intercept_, hp.dropout)
    train_recipe(tail, x, y[train_idx], epochs, hp, class_weights, hp.seed)
    report["refit"] = {"on": "train", "samples": n_train, "epochs": epochs}
    val_acc = 0.0
    if clf.val_samples:
        val_idx = np.arange(n_train, len(samples))
        val_acc = tail_accuracy(tail, advance(net, subset(acts, val_idx, 0), cut, start), y[val_idx])
    fc = (tail.fc.weight.detach().numpy().copy(), tail.fc.bias.detach().numpy().copy())
    model = fine_tuned_model(clf, baseline, net, fc, report, val_acc, start_time, progress)
    report["cpu_s"] = round(time.process_time() - start_cpu, 2)
    return model


def _rows(acts: Embeddings, samples: np.ndarray, max_view: int) -> np.ndarray:
    """Row indices of `samples` with view <= max_view, in row order (as subset() keeps them)."""
    return np.flatnonzero(np.isin(acts.owner, samples) & (acts.view <= max_view))
