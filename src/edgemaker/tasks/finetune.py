"""`--fine-tune K|auto`: after the head converges, train the last K backbone blocks with it.

Fast on a CPU because the activation entering the first unfrozen block is computed
once per window (an image is one window, a sound clip several) and view and cached
(features/activations.py), so an epoch runs only the last K blocks; validation scores samples (the
mean of their windows' probabilities), as evaluation does. BatchNorm statistics stay frozen (eval mode), the learning rate is small, and early
stopping on validation accuracy restores the best state. The result plugs in as an ordinary
backbone: its weights are saved content-addressed and described by a new BackboneSpec, so its
ONNX graph, embedding cache keys and every export follow from `spec.cache_id` as for any backbone.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import io
import time

import numpy as np

from ..atomic import write_bytes
from ..backbones import get_builder
from ..backbones.runtime import Backbone
from ..backbones.spec import BackboneSpec, WeightsSource
from ..backbones.stages import stages, trunk_view
from ..backbones.weights import load_state_dict, resolve_weights
from ..errors import EdgemakerError
from ..features.activations import ActivationStore, PrefixRunner, extract_activations, prefix_onnx
from ..features.extract import Embeddings, cache_tag, default_silence, silence_tag
from ..paths import cache_dir
from ..progress import Progress
from ..training.loop import descend, seeded, state_copy, train_epochs
from .options import augmentation_for

# Backbones whose builder's trunk has a stage view (backbones/stages.py): EfficientNet-Lite (images,
# and on log-mel patches) and tfnet's MobileNetV1/V2 (yamnet on its own patches, the image ones whole).
# aisfx is not here (yet): four VGG-style blocks of about equal compute, the last holding 76% of its
# weights, so K=1 already retrains most of the network and the cache saves at most 4x per epoch.
FINE_TUNABLE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite0_mel", "yamnet",
                "mobilenet_v2", "mobilenet_v1_025", "mobilenet_v1_050")


def supported(spec: BackboneSpec) -> bool:
    return spec.name in FINE_TUNABLE


def check_supported(spec: BackboneSpec, depths: list[int]) -> None:
    """One-line errors before any work: a backbone without fine-tuning support, or K too large."""
    if not supported(spec):
        raise EdgemakerError(f"--fine-tune: backbone {spec.name!r} ({spec.modality}) is not supported; "
                             f"it works with the backbones {', '.join(FINE_TUNABLE)} (use --fine-tune 0 for "
                             "a head-only model)")
    n = block_count(spec)
    if max(depths) > n:
        raise EdgemakerError(f"--fine-tune {max(depths)}: {spec.name} has {n} blocks; use at most {n} (or auto)")


@functools.lru_cache(maxsize=32)
def block_count(spec: BackboneSpec) -> int:
    return len(stages(trunk(spec)).blocks)


def _built(spec: BackboneSpec):
    """The registered builder's module with the spec's weights, seen as its trunk (backbones/stages.py)."""
    return trunk_view(get_builder(spec.name)(spec, resolve_weights(spec.weights)).eval())


def trunk(spec: BackboneSpec):
    """The trunk inside the registered builder's module, pretrained weights loaded, eval mode."""
    return _built(spec).net.eval()


def prefix_module(spec: BackboneSpec, cut: int):
    """The backbone up to block `cut`: from float NCHW for images, from the waveform window (front
    end and patch-as-image included) for sounds."""
    return prefix_of(_built(spec), cut)


def prefix_of(view, cut: int):
    """The trunk `view` (backbones/stages.py) up to block `cut`, from its module's input."""
    import torch

    st = view.stages

    class Prefix(torch.nn.Module):
        """[front end + patch as image +] stem + blocks[:cut] -> the activation entering block `cut`."""

        def __init__(self) -> None:
            super().__init__()
            self.module = view.module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = st.stem(view.to_trunk(x))
            for block in st.blocks[:cut]:
                x = block(x)
            return x

    return Prefix().eval()


def tail_module(net, start: int, coef: np.ndarray, intercept: np.ndarray, dropout: float, depth: int | None = None):
    """What fine-tuning trains, from block `start` of trunk `net` (seen as a backbone cut after block
    `depth`, if given); the rest of `net` is frozen."""
    import torch

    st = stages(net, depth)

    class Tail(torch.nn.Module):
        """blocks[start:] + the head layers (if any) + pooling + dropout + linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(st.blocks[start:])
            self.head = st.head
            self.drop = torch.nn.Dropout(dropout)
            self.fc = torch.nn.Linear(coef.shape[1], coef.shape[0])
            with torch.no_grad():
                self.fc.weight.copy_(torch.from_numpy(np.asarray(coef, np.float32)))
                self.fc.bias.copy_(torch.from_numpy(np.asarray(intercept, np.float32)))

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                a = block(a)
            return self.fc(self.drop(self.head(a).mean(dim=(2, 3))))

    tail = Tail()
    for p in net.parameters():
        p.requires_grad_(False)
    for p in tail.parameters():
        p.requires_grad_(True)
    return tail.eval()  # BatchNorm statistics frozen; dropout is switched on per training step


def advance(net, acts: Embeddings, start: int, stop: int, batch: int = 64) -> Embeddings:
    """Run frozen blocks[start:stop] over cached activation rows, once."""
    import torch

    if start == stop:
        return acts
    out = []
    with torch.no_grad():
        for i in range(0, len(acts.vectors), batch):
            x = torch.from_numpy(acts.vectors[i : i + batch].astype(np.float32))
            for block in stages(net).blocks[start:stop]:
                x = block(x)
            out.append(x.numpy().astype(np.float16))
    return dataclasses.replace(acts, vectors=np.concatenate(out))


def validate(tail, xv: Embeddings, yv: np.ndarray, batch: int = 64) -> tuple[float, float]:
    """Sample-level (accuracy, log loss): a sample's probabilities are the mean over its windows."""
    import torch

    tail.eval()
    with torch.no_grad():
        logits = torch.cat([tail(torch.from_numpy(xv.vectors[i : i + batch].astype(np.float32)))
                            for i in range(0, len(xv.vectors), batch)])
        proba = xv.aggregate(torch.softmax(logits, 1).numpy().astype(np.float64))
    p = proba[np.arange(len(yv)), yv]
    return float((proba.argmax(1) == yv).mean()), float(-np.log(np.clip(p, 1e-12, 1.0)).mean())


def train_tail(tail, x: Embeddings, y: np.ndarray, xv: Embeddings, yv: np.ndarray, views: bool, ft, hp,
               class_weights: np.ndarray | None, soft: np.ndarray | None = None) -> dict:
    """AdamW on the tail over activation rows (windows) labelled by their sample's label (`y` per
    sample); one view per sample per epoch (view 0 only when `views` is False). Early stopping on
    validation (accuracy, then loss); the best state, epoch 0 included, is restored. `soft`: (samples,
    classes) target probabilities (a teacher's) learnt instead of the labels."""
    import torch

    rng = seeded(hp.seed, with_torch=True)
    params = [p for p in tail.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ft.learning_rate, weight_decay=hp.weight_decay)
    weight = None if class_weights is None else torch.from_numpy(class_weights.astype(np.float32))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing)
    targets = None if soft is None else torch.from_numpy(np.asarray(soft, np.float32))

    def criterion(logits, owners: np.ndarray):
        if targets is None:
            return loss_fn(logits, torch.from_numpy(y[owners]))
        return -(targets[torch.from_numpy(owners)] * torch.log_softmax(logits, 1)).sum(1).mean()

    n_views = int(x.view.max(initial=0)) + 1

    def train_epoch(epoch: int) -> None:
        tail.drop.train()
        pick = rng.integers(0, n_views, x.n_samples) if views else np.zeros(x.n_samples, int)
        order = rng.permutation(np.flatnonzero(x.view == pick[x.owner]))
        for start in range(0, len(order), ft.batch_size):
            idx = order[start : start + ft.batch_size]
            xb = torch.from_numpy(x.vectors[idx].astype(np.float32))
            descend(opt, criterion(tail(xb), x.owner[idx]))

    fit = train_epochs(ft.epochs, train_epoch, lambda: validate(tail, xv, yv), ft.patience,
                       lambda: state_copy(tail), tail.load_state_dict, score_start=True)
    history = [{"epoch": r.epoch, "val_accuracy": round(r.val_accuracy, 4), "val_loss": round(r.val_loss, 4)}
               for r in fit.history]
    acc, neg_loss = fit.best_score
    return {"val_accuracy": round(acc, 4), "val_loss": round(-neg_loss, 4), "best_epoch": fit.best_epoch,
            "epochs_run": len(history) - 1, "history": history, "rank": fit.best_score}


def save_weights(spec: BackboneSpec, net, root) -> tuple:
    """The whole network's state dict (the builder's key format, ImageNet classifier kept so
    strict loading works), written once to <root>/finetuned/<sha256>.pth; -> (path, sha256)."""
    import torch

    weights = resolve_weights(spec.weights)
    state = {} if weights.suffix == ".npz" else load_state_dict(weights)  # a shipped tfnet trunk is whole
    trained = net.state_dict()
    unknown = set(trained) - set(state)
    if state and unknown:
        raise EdgemakerError(f"--fine-tune: {spec.name} has parameters its weights file lacks ({sorted(unknown)[0]})")
    state.update({k: v.detach().clone().contiguous() for k, v in trained.items()})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    path = (root or cache_dir()) / "finetuned" / f"{sha}.pth"
    if not path.is_file():
        write_bytes(path, data)
    return path, sha


def head_only_score(clf) -> tuple[float, float]:
    """Validation (accuracy, loss) of the head-only model: the score every depth must beat."""
    ev = clf.evaluate(clf.val_samples)
    return ev.accuracy, ev.loss


def check_candidates(specs: list[BackboneSpec], depths: list[int]) -> None:
    """Before any work: K must fit every candidate fine-tuning supports, and one must be supported
    (an unsupported default, e.g. aisfx among the sound defaults, still competes head-only)."""
    for spec in [s for s in specs if supported(s)] or specs[:1]:
        check_supported(spec, depths)



def head_targets(clf, *groups):
    """(the head's classes, its class weights in that order or None, one int64 label array per sample
    group): what a fine-tuned tail trains against, in the trained head's class order."""
    classes = [str(c) for c in clf.head.classes_]
    index = {c: i for i, c in enumerate(classes)}
    cw = clf.head.class_weights_
    class_weights = None if not cw else np.array([cw[c] for c in classes], np.float32)
    return classes, class_weights, [np.array([index[s.label] for s in g], np.int64) for g in groups]

def fine_tune(clf, progress: Progress, baseline=None):
    """-> a Classifier whose backbone has its last K blocks fine-tuned, or `baseline` (the head-only
    winner, `clf` itself by default) when K=0 wins on validation; `fine_tune` (the report) and
    `head_only` (the model before) set."""
    import torch

    start_time = time.perf_counter()
    opts = clf.options
    ft, hp = opts.fine_tune, opts.hparams
    spec = clf.spec
    depths = [k for k in ft.depths if k > 0]
    check_supported(spec, depths)
    if not clf.val_samples:
        raise EdgemakerError("--fine-tune chooses on the validation split, and this run has none; "
                             "use a split with validation (e.g. --split 80/10/10)")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    n_blocks = block_count(spec)
    deepest = max(depths)
    cut = n_blocks - deepest

    # Cut activations, cached: train views exactly as the head's (same seeds), validation clean.
    views = opts.augmentation.active_views
    augmentation = augmentation_for(spec, opts) if views else None
    silence = default_silence(spec, opts.silence)
    extra = "|".join(filter(None, (silence_tag(silence), f"cut{cut}")))
    run = PrefixRunner(prefix_onnx(spec, cut, prefix_module, opts.cache_dir), opts.threads)
    store = ActivationStore(clf.cache.path) if clf.cache is not None else None
    try:
        def tag_of(v: int) -> str:
            return cache_tag(clf.backbone, augmentation, v, extra)

        a_train = extract_activations(clf.train_samples, views, augmentation, spec, tag_of, run, store, progress,
                                      silence, f"activations train (cut {cut})")
        a_val = extract_activations(clf.val_samples, 0, None, spec, tag_of, run, store, progress,
                                    silence, f"activations val (cut {cut})")
    finally:
        if store is not None:
            store.close()
    activations_s = time.perf_counter() - start_time

    classes, class_weights, (y, yv) = head_targets(clf, clf.train_samples, clf.val_samples)

    baseline = baseline or clf
    base_acc, base_loss = head_only_score(baseline)
    rank0 = (base_acc, -base_loss)
    candidates = [{"k": 0, "augmentation": "views" if views else "clean", "val_accuracy": round(base_acc, 4),
                   "val_loss": round(base_loss, 4), "seconds": 0.0}]
    best = (rank0, 0, None, None, None)  # (rank, k, net state, fc, augmentation)
    net = trunk(spec)
    original = copy.deepcopy(net.state_dict())
    modes = ["clean", "views"] if views else ["clean"]
    previous = None
    for k in depths:
        net.load_state_dict(original)
        start = n_blocks - k
        x, xv = advance(net, a_train, cut, start), advance(net, a_val, cut, start)
        results = []
        for mode in modes:
            net.load_state_dict(original)
            t0 = time.perf_counter()
            tail = tail_module(net, start, clf.head.coef_, clf.head.intercept_, hp.dropout)
            record = train_tail(tail, x, y, xv, yv, mode == "views", ft, hp, class_weights)
            record.update(k=k, augmentation=mode, seconds=round(time.perf_counter() - t0, 2))
            rank = record.pop("rank")
            rank = rank if record["best_epoch"] else rank0  # unchanged weights: the head-only model itself
            results.append((rank, record, copy.deepcopy(net.state_dict()),
                            (tail.fc.weight.detach().numpy().copy(), tail.fc.bias.detach().numpy().copy())))
            progress.log(f"fine-tune last {k} block(s), {mode} inputs: val accuracy {record['val_accuracy']:.4f} "
                         f"(best epoch {record['best_epoch']} of {record['epochs_run']}, {record['seconds']:.1f} s)")
        rank, record, state, fc = max(results, key=lambda r: r[0])
        candidates.extend(r[1] for r in results)
        if rank > best[0]:
            best = (rank, k, state, fc, record["augmentation"])
        modes = [record["augmentation"]]  # the augmentation chosen at the first depth serves the deeper ones
        if ft.depth == "auto" and previous is not None and rank <= previous:
            break  # a deeper cut stopped helping on validation (the first two depths are always tried)
        previous = rank

    chosen = best[1]
    report = {
        "requested": ft.depth, "chosen_k": chosen, "blocks": n_blocks, "cut": cut,
        "augmentation": best[4],
        "candidates": candidates,
        "activations": {"computed": run.calls, "reused": len(a_train.vectors) + len(a_val.vectors) - run.calls,
                        "seconds": round(activations_s, 2)},
        "backbone": spec.name,
        "head_only_backbone": baseline.spec.name, "head_only": {"val_accuracy": round(base_acc, 4)},
    }
    if chosen == 0:
        return keep_head_only(baseline, report, base_acc, start_time, progress)
    net.load_state_dict(best[2])
    return fine_tuned_model(clf, baseline, net, best[3], report, best[0][0], start_time, progress)


def keep_head_only(baseline, report: dict, base_acc: float, start_time: float, progress: Progress):
    """The head-only model, carrying the fine-tune `report` (what was tried and why it lost); its head
    refitted on train + val where the run refits on all its labelled data, as a run without --fine-tune
    ships it (validation was held out only for the comparison, which is over)."""
    if baseline.options.hparams.refit_on_val and baseline.refit_head_on_val():
        report["head_only"]["refit"] = "train + val"
        progress.log("fine-tune: the head-only model's head refitted on train + val")
    baseline.head_only = baseline
    report["fine_tuned"] = {"val_accuracy": round(base_acc, 4)}
    report["extra_s"] = round(time.perf_counter() - start_time, 2)
    baseline.fine_tune = report
    baseline.timings = {**baseline.timings, "fine_tune_s": report["extra_s"]}
    progress.log(f"fine-tune: head only kept (val accuracy {base_acc:.4f} not beaten)")
    return baseline


def fine_tuned_model(clf, baseline, net, fc: tuple, report: dict, val_accuracy: float, start_time: float,
                     progress: Progress):
    """`clf` with `net` (its trunk, the last `report['chosen_k']` blocks trained) and head `fc` =
    (weight, bias): the weights saved content-addressed, a new spec, the ONNX model checked on validation."""
    opts, spec, chosen = clf.options, clf.spec, report["chosen_k"]
    path, sha = save_weights(spec, net, opts.cache_dir)
    new_spec = dataclasses.replace(spec, weights=WeightsSource("file", str(path), sha),
                                   description=f"{spec.description}; last {chosen} blocks fine-tuned")
    head = copy.copy(clf.head)
    head.coef_, head.intercept_ = fc[0].astype(np.float32), fc[1].astype(np.float32)
    model = type(clf)(Backbone(new_spec, opts.threads, opts.cache_dir), head, opts, clf.cache, progress)
    model.train_samples, model.val_samples, model.selection = clf.train_samples, clf.val_samples, clf.selection
    model.head_selection = clf.head_selection  # the head's settings, which the int8 checks' train-only head reuses
    model.head_only = baseline
    onnx_val = model.evaluate(clf.val_samples) if clf.val_samples else None
    report["fine_tuned"] = {"val_accuracy": round(val_accuracy, 4),
                            "val_accuracy_onnx": round(onnx_val.accuracy, 4) if onnx_val else None}
    report["weights"] = str(path)
    report["extra_s"] = round(time.perf_counter() - start_time, 2)
    model.fine_tune = report
    model.timings = {**baseline.timings, "fine_tune_s": report["extra_s"]}
    before = report["head_only"]["val_accuracy"]
    progress.log(f"fine-tune: last {chosen} block(s) chosen, val accuracy {before:.4f} -> "
                 f"{onnx_val.accuracy if onnx_val else val_accuracy:.4f}")
    return model
