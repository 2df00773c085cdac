"""Fine-tune the budget search's finalists: a truncated trunk trained end to end on the user's images.

Why: at 64-80 px the frozen ImageNet features of an early-cut EfficientNet are the limit (a head on
them is all the screening can train). Fine-tuning changes weights only, never the graph, so the
footprint predicted for a candidate (and measured on its int8 file) stays what it was: accuracy for
no bytes. The best few fitting truncated candidates by screening validation accuracy (FINALISTS)
each get their trunk blocks (the stem stays frozen) and head trained together on a fresh augmented
view per epoch, BatchNorm statistics frozen, a low learning rate, and early stopping on validation
(tasks/scratch.py's fit_network loop); the linear head starts from the candidate's own fitted head,
so training starts at the head-only model. A tuned model is kept only when its validation accuracy
(then loss), scored through its exported ONNX graph, beats the best model so far; the test split
is never looked at.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import replace

import numpy as np

from ..progress import Progress
from .options import ClassifierOptions

FINALISTS = 2  # truncated candidates fine-tuned: the best by screening validation accuracy
EPOCHS = 12
PATIENCE = 3
LEARNING_RATE = 3e-4  # AdamW; low, so the pretrained trunk moves without forgetting
WEIGHT_DECAY = 1e-4
LABEL_SMOOTHING = 0.1


def finalists(candidates, n: int) -> list:
    """The best `n` fitting truncated-trunk candidates by screening rank (small_cnn is trained already)."""
    from .budget_search import _rank

    tunable = [c for c in candidates if c.fits and c.width is None and c.val_accuracy is not None
               and c.backbone != "efficientnet_lite0"]
    return sorted(tunable, key=_rank, reverse=True)[:n]


def tune_options(options: ClassifierOptions, epochs: int) -> ClassifierOptions:
    """The training settings of a trunk fine-tune (fit_network reads hparams); augmentation on."""
    hp = replace(options.hparams, learning_rate=LEARNING_RATE, epochs=epochs, patience=PATIENCE,
                 weight_decay=WEIGHT_DECAY, label_smoothing=LABEL_SMOOTHING)
    return replace(options, hparams=hp, augmentation=replace(options.augmentation, enabled=True))


def _score(clf, validation) -> tuple[float, float]:
    ev = clf.evaluate(validation)
    return ev.accuracy, ev.loss


def tune(base, train, validation, options: ClassifierOptions, progress: Progress, epochs: int):
    """(the fine-tuned Classifier, its training summary): `base` is a truncated backbone + fitted head."""
    import torch

    from ..backbones.runtime import Backbone
    from ..backbones.spec import WeightsSource
    from ..backbones.truncated import _trunk, make_truncated, parse_name
    from ..backbones.weights import resolve_weights
    from .finetune import save_weights
    from .scratch import fit_network, image_sets

    t0 = time.perf_counter()
    spec = base.spec
    variant, depth = parse_name(spec.name)
    net = _trunk(variant, spec.image.size, resolve_weights(spec.weights))
    trunk = make_truncated(net, depth)
    opts = tune_options(options, epochs)
    x_train, x_val, classes = image_sets(spec, train, validation, opts, progress)
    if classes != base.classes:
        raise RuntimeError("budget fine-tune: the head's classes differ from the training labels")
    fc = torch.nn.Linear(spec.feature_dim, len(classes))
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(np.asarray(base.head.coef_, np.float32)))
        fc.bias.copy_(torch.from_numpy(np.asarray(base.head.intercept_, np.float32)))
    model = torch.nn.Sequential(trunk, torch.nn.Dropout(opts.hparams.dropout), fc)
    for part in (trunk.stem, trunk.bn0):
        part.requires_grad_(False)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def train_mode() -> None:  # dropout on, BatchNorm statistics frozen (small batches, tiny data)
        model.train()
        for m in bns:
            m.eval()

    params = [p for p in model.parameters() if p.requires_grad]
    history = fit_network(model, params, x_train, x_val, opts, progress, f"fine-tune {spec.name}@{spec.image.size}",
                          train_mode, small=False)
    path, sha = save_weights(spec, net, options.cache_dir)
    tuned_spec = dataclasses.replace(spec, weights=WeightsSource("file", str(path), sha),
                                     description=f"{spec.description}; trunk fine-tuned on this data")
    head = copy.copy(base.head)
    head.coef_ = fc.weight.detach().numpy().astype(np.float32).copy()
    head.intercept_ = fc.bias.detach().numpy().astype(np.float32).copy()
    model_clf = type(base)(Backbone(tuned_spec, options.threads, options.cache_dir), head, base.options, base.cache,
                           base.progress)
    for attr in ("train_samples", "val_samples", "selection", "head_selection", "timings"):
        setattr(model_clf, attr, getattr(base, attr))
    best = max(history, key=lambda r: (r.val_accuracy or 0.0, -(r.val_loss or 0.0)))
    return model_clf, {"epochs_run": len(history), "best_epoch": best.epoch, "weights": str(path),
                       "seconds": round(time.perf_counter() - t0, 2)}


def improve(cls, record, clf, train, validation, options: ClassifierOptions, progress: Progress,
            cache, n: int | None = None, epochs: int | None = None):
    """-> (the model to keep, a report dict): each finalist fine-tuned, kept only if validation improves
    on the best so far (the search's head-only winner first)."""
    t0 = time.perf_counter()
    n, epochs = FINALISTS if n is None else n, epochs or EPOCHS
    best_rank = _score(clf, validation)
    best_rank = (best_rank[0], -best_rank[1])
    head_only = {"name": record.winner, "val_accuracy": round(best_rank[0], 4), "val_loss": round(-best_rank[1], 4)}
    kept, kept_name, tried = clf, None, []
    for c in finalists(record.candidates, n):
        if c.name == record.winner and clf.spec.name == c.backbone:
            base = clf
        else:  # its features are cached by the screening: a head fit only
            base = cls.create(train, validation, replace(options, model=replace(
                options.model, backbone=c.backbone, input_size=c.size)), progress, cache)
        base_acc, base_loss = _score(base, validation)
        tuned, summary = tune(base, train, validation, options, progress, epochs)
        acc, loss = _score(tuned, validation)
        entry = {"name": c.name, "head_only_val_accuracy": round(base_acc, 4), "head_only_val_loss": round(base_loss, 4),
                 "val_accuracy": round(acc, 4), "val_loss": round(loss, 4), **summary, "kept": False}
        progress.log(f"budget: {c.name} trunk fine-tuned: val accuracy {base_acc:.3f} -> {acc:.3f} "
                     f"({summary['epochs_run']} epochs, {summary['seconds']:.1f} s)")
        if (acc, -loss) > best_rank:
            best_rank, kept, kept_name = (acc, -loss), tuned, c.name
            for t in tried:
                t["kept"] = False
            entry["kept"] = True
        tried.append(entry)
    report = {"head_only": head_only, "finalists": tried, "kept": kept_name,
              "val_accuracy": round(best_rank[0], 4), "seconds": round(time.perf_counter() - t0, 2)}
    return kept, report
