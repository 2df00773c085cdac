"""Fine-tune the budget search's finalists: the last blocks of a truncated trunk (EfficientNet-Lite or
MobileNetV1) trained on the user's images.

Why: at 48-80 px the frozen ImageNet features of an early-cut EfficientNet are the limit (a head on
them is all the screening trains). Fine-tuning changes weights only, never the graph, so the
footprint predicted for a candidate (and measured on its int8 file) stays what it was: accuracy for
no bytes. The best few fitting truncated candidates by screening validation accuracy (FINALISTS)
get their last LAST_BLOCKS blocks and head trained together with tasks/finetune.py's loop: the
activation entering those blocks is computed once per image and augmented view and cached, so an
epoch runs only them; BatchNorm statistics frozen, a low learning rate, early stopping on
validation with the head-only state (epoch 0) kept when nothing beats it. The best tuned finalist is
then tuned again on the full model's probabilities (tasks/distill.py's teacher, on clean images:
soft targets help most at small inputs). A tuned model is kept only when its validation accuracy
(then loss), scored through its exported ONNX graph, beats the best model so far; the test split
is never looked at."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import replace

import numpy as np

from ..backbones.stages import cut_trunk_view
from ..progress import Progress
from .options import ClassifierOptions

FINALISTS = 1  # with --fine-tune: truncated candidates fine-tuned, the best by screening validation accuracy
EPOCHS = 12
PATIENCE = 3
LEARNING_RATE = 3e-4  # AdamW; low, so the pretrained trunk moves without forgetting
WEIGHT_DECAY = 1e-4
LABEL_SMOOTHING = 0.1
LAST_BLOCKS = 3  # blocks trained, counted back from the cut (the rest of the trunk stays frozen)
TEACHER = True  # the best finalist is tuned again on the full model's probabilities (distillation)


def rank(c) -> tuple:
    """A budget candidate's screening order: validation accuracy, then lower loss, then smaller flash."""
    return (c.val_accuracy or 0.0, -(c.val_loss or 0.0), -c.predicted["flash_bytes"])


def finalists(candidates, n: int) -> list:
    """The best `n` fitting truncated-trunk candidates by screening rank (small_cnn is trained already)."""
    tunable = [c for c in candidates if c.fits and c.width is None and c.val_accuracy is not None
               and c.backbone != "efficientnet_lite0"]
    return sorted(tunable, key=rank, reverse=True)[:n]


def tune_options(options: ClassifierOptions, epochs: int) -> ClassifierOptions:
    """The training settings of a trunk fine-tune (fit_network reads hparams); augmentation on."""
    hp = replace(options.hparams, learning_rate=LEARNING_RATE, epochs=epochs, patience=PATIENCE,
                 weight_decay=WEIGHT_DECAY, label_smoothing=LABEL_SMOOTHING)
    return replace(options, hparams=hp, augmentation=replace(options.augmentation, enabled=True))


def _score(clf, validation) -> tuple[float, float]:
    ev = clf.evaluate(validation)
    return ev.accuracy, ev.loss


def teacher_targets(cls, train, validation, options: ClassifierOptions, progress: Progress, cache,
                    classes: list[str]) -> tuple[np.ndarray, float]:
    """((N, classes) targets, the teacher's validation accuracy): the full model's (tasks/distill.py's
    teacher, on clean images only: one extraction pass) probabilities mixed with the smoothed label."""
    from .distill import soft_targets, teacher_options

    t_opts = teacher_options(options)
    t_opts = replace(t_opts, augmentation=replace(t_opts.augmentation, enabled=False))
    teacher = cls.create(train, validation, t_opts, progress, cache)
    soft = soft_targets(teacher, tune_options(t_opts, EPOCHS), train, 0, classes, progress)
    return soft[:, 0], teacher.evaluate(validation).accuracy


def _prefix(spec, cut: int):
    """The truncated backbone up to block `cut` (float NCHW -> the activation entering block `cut`)."""
    from ..backbones.weights import resolve_weights
    from .finetune import prefix_of

    return prefix_of(cut_trunk_view(spec, resolve_weights(spec.weights)), cut)


def tune(base, train, validation, options: ClassifierOptions, progress: Progress, epochs: int,
         soft_targets: np.ndarray | None = None, last: int | None = None):
    """(the fine-tuned Classifier, its training summary): `base` is a truncated backbone + fitted head.
    The activation entering the first trained block is computed once per image and view and cached
    (features/activations.py), so an epoch runs only the trained blocks (tasks/finetune.py's loop).
    `soft_targets` (N, classes): a teacher's targets learnt instead of the labels; `last`: the blocks
    trained, counted back from the cut (None: LAST_BLOCKS)."""
    import torch

    from ..backbones.runtime import Backbone
    from ..backbones.spec import WeightsSource
    from ..backbones.weights import resolve_weights
    from ..features.activations import (
        ActivationStore,
        PrefixRunner,
        extract_activations,
        prefix_onnx,
    )
    from ..features.extract import cache_tag
    from .classifier import augmentation_for
    from .finetune import save_weights, tail_module, train_tail

    t0 = time.perf_counter()
    spec = base.spec
    view = cut_trunk_view(spec, resolve_weights(spec.weights))
    net, depth = view.net, view.depth
    start = max(0, depth - (LAST_BLOCKS if last is None else last))
    opts = tune_options(options, epochs)
    views = max(1, options.augmentation.views)
    augmentation = augmentation_for(spec, opts)
    run = PrefixRunner(prefix_onnx(spec, start, _prefix, options.cache_dir), options.threads)
    store = ActivationStore(base.cache.path) if base.cache is not None else None
    try:
        def tag_of(v: int) -> str:
            return cache_tag(base.backbone, augmentation, v, f"cut{start}")

        x = extract_activations(train, views, augmentation, spec, tag_of, run, store, progress, None,
                                f"activations train (cut {start})")
        xv = extract_activations(validation, 0, None, spec, tag_of, run, store, progress, None,
                                 f"activations val (cut {start})")
    finally:
        if store is not None:
            store.close()
    index = {c: i for i, c in enumerate(base.classes)}
    y = np.array([index[s.label] for s in train], np.int64)
    yv = np.array([index[s.label] for s in validation], np.int64)
    cw = base.head.class_weights_
    class_weights = None if not cw else np.array([cw[c] for c in base.head.classes_.tolist()], np.float32)
    tail = tail_module(net, start, base.head.coef_, base.head.intercept_, opts.hparams.dropout, depth)
    ft = replace(options.fine_tune, epochs=epochs, patience=PATIENCE, learning_rate=LEARNING_RATE)
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads or threads)
    try:
        record = train_tail(tail, x, y, xv, yv, True, ft, opts.hparams, class_weights, soft_targets)
    finally:
        torch.set_num_threads(threads)
    path, sha = save_weights(spec, net, options.cache_dir)
    tuned_spec = dataclasses.replace(spec, weights=WeightsSource("file", str(path), sha),
                                     description=f"{spec.description}; last {depth - start} blocks fine-tuned")
    head = copy.copy(base.head)
    head.coef_ = tail.fc.weight.detach().numpy().astype(np.float32).copy()
    head.intercept_ = tail.fc.bias.detach().numpy().astype(np.float32).copy()
    model = type(base)(Backbone(tuned_spec, options.threads, options.cache_dir), head, base.options, base.cache,
                       base.progress)
    for attr in ("train_samples", "val_samples", "selection", "head_selection", "timings"):
        setattr(model, attr, getattr(base, attr))
    return model, {"targets": "labels" if soft_targets is None else "teacher", "blocks": depth - start,
                   "epochs_run": record["epochs_run"], "best_epoch": record["best_epoch"], "weights": str(path),
                   "seconds": round(time.perf_counter() - t0, 2)}


def improve(cls, record, clf, train, validation, options: ClassifierOptions, progress: Progress,
            cache, n: int | None = None, epochs: int | None = None, teacher: bool | None = None):
    """-> (the model to keep, a report dict): each finalist fine-tuned on the labels, then the best of
    them again on the full model's targets (`teacher`, default TEACHER); a tuned model is kept only
    if validation improves on the best so far (the search's head-only winner first)."""
    t0 = time.perf_counter()
    n, epochs = FINALISTS if n is None else n, epochs or EPOCHS
    teacher = TEACHER if teacher is None else teacher
    best_rank = _score(clf, validation)
    best_rank = (best_rank[0], -best_rank[1])
    head_only = {"name": record.winner, "val_accuracy": round(best_rank[0], 4), "val_loss": round(-best_rank[1], 4)}
    kept, kept_name, tried, bases = clf, None, [], {}

    def attempt(c, soft=None) -> tuple:
        nonlocal best_rank, kept, kept_name
        if c.name not in bases:
            if c.name == record.winner and clf.spec.name == c.backbone:
                bases[c.name] = clf
            else:  # its features are cached by the screening: a head fit only
                bases[c.name] = cls.create(train, validation, replace(options, model=replace(
                    options.model, backbone=c.backbone, input_size=c.size)), progress, cache)
        base = bases[c.name]
        base_acc, base_loss = _score(base, validation)
        tuned, summary = tune(base, train, validation, options, progress, epochs, soft)
        acc, loss = _score(tuned, validation)
        entry = {"name": c.name, "head_only_val_accuracy": round(base_acc, 4),
                 "head_only_val_loss": round(base_loss, 4), "val_accuracy": round(acc, 4), "val_loss": round(loss, 4),
                 **summary, "kept": False}
        progress.log(f"budget: {c.name} trunk fine-tuned on the {summary['targets']}: val accuracy {base_acc:.3f} "
                     f"-> {acc:.3f} ({summary['epochs_run']} epochs, {summary['seconds']:.1f} s)")
        # best epoch 0: the weights are the head-only model's (an ONNX rounding must not make it "better")
        if summary["best_epoch"] > 0 and (acc, -loss) > best_rank:
            best_rank, kept, kept_name = (acc, -loss), tuned, c.name
            for t in tried:
                t["kept"] = False
            entry["kept"] = True
        tried.append(entry)
        return acc, -loss

    ranked = [(attempt(c), i, c) for i, c in enumerate(finalists(record.candidates, n))]
    teacher_acc = None
    if teacher and ranked:
        c = max(ranked, key=lambda r: (r[0], -r[1]))[2]
        soft, teacher_acc = teacher_targets(cls, train, validation, options, progress, cache, bases[c.name].classes)
        attempt(c, soft)
    report = {"head_only": head_only, "finalists": tried, "kept": kept_name,
              "kept_targets": next((t["targets"] for t in tried if t["kept"]), None),
              "teacher_val_accuracy": None if teacher_acc is None else round(teacher_acc, 4),
              "val_accuracy": round(best_rank[0], 4), "seconds": round(time.perf_counter() - t0, 2)}
    return kept, report
