"""`--fine-tune K|auto`: after the head converges, train the last K backbone blocks with it.

Fast on a CPU the way seed 001 is: the activation entering the first unfrozen block is computed
once per sample and view and cached (features/activations.py), so an epoch runs only the last K
blocks. BatchNorm statistics stay frozen (eval mode), the learning rate is small, and early
stopping on validation accuracy restores the best state. The result plugs in as an ordinary
backbone: its weights are saved content-addressed and described by a new BackboneSpec, so its
ONNX graph, embedding cache keys and every export follow from `spec.cache_id` as for any backbone.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import time

import numpy as np

from ..atomic import write_bytes
from ..backbones import get_builder
from ..backbones.runtime import Backbone
from ..backbones.spec import BackboneSpec, WeightsSource
from ..backbones.weights import load_state_dict, resolve_weights
from ..errors import EdgemakerError
from ..features.activations import ActivationStore, PrefixRunner, extract_activations, prefix_onnx
from ..features.extract import cache_tag
from ..paths import cache_dir
from ..progress import Progress

# Image backbones whose builder exposes an EfficientNet trunk (`.net` with _blocks, _conv_head, _bn1).
FINE_TUNABLE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def check_supported(spec: BackboneSpec, depths: list[int]) -> None:
    """One-line errors before any work: a backbone without fine-tuning support, or K too large."""
    if spec.name not in FINE_TUNABLE or spec.image is None:
        raise EdgemakerError(f"--fine-tune: backbone {spec.name!r} ({spec.modality}) is not supported; "
                             f"it works with the image backbones {', '.join(FINE_TUNABLE)} (use --fine-tune 0 for "
                             "a head-only model)")
    n = block_count(spec)
    if max(depths) > n:
        raise EdgemakerError(f"--fine-tune {max(depths)}: {spec.name} has {n} blocks; use at most {n} (or auto)")


def block_count(spec: BackboneSpec) -> int:
    from efficientnet_lite_pytorch import EfficientNet

    assert spec.image is not None
    variant = spec.name.removeprefix("efficientnet_")
    return len(EfficientNet.from_name(f"efficientnet-{variant}", image_size=spec.image.size)._blocks)


def _trunk(spec: BackboneSpec):
    """The EfficientNet inside the registered builder's module, pretrained weights loaded, eval mode."""
    return get_builder(spec.name)(spec, resolve_weights(spec.weights)).net.eval()


def _prefix_module(spec: BackboneSpec, cut: int):
    import torch

    net = _trunk(spec)

    class Prefix(torch.nn.Module):
        """Stem + blocks[:cut]: float NCHW -> the activation entering block `cut`."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = net._swish(net._bn0(net._conv_stem(x)))
            for block in net._blocks[:cut]:
                x = block(x)
            return x

    return Prefix().eval()


def _tail_module(net, start: int, coef: np.ndarray, intercept: np.ndarray, dropout: float):
    import torch

    class Tail(torch.nn.Module):
        """blocks[start:] + head conv/bn + pooling + dropout + linear head: what fine-tuning trains."""

        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(net._blocks[start:])
            self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish
            self.drop = torch.nn.Dropout(dropout)
            self.fc = torch.nn.Linear(coef.shape[1], coef.shape[0])
            with torch.no_grad():
                self.fc.weight.copy_(torch.from_numpy(np.asarray(coef, np.float32)))
                self.fc.bias.copy_(torch.from_numpy(np.asarray(intercept, np.float32)))

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                a = block(a)
            return self.fc(self.drop(self.act(self.bn1(self.conv_head(a))).mean(dim=(2, 3))))

    tail = Tail()
    for p in net.parameters():
        p.requires_grad_(False)
    for p in tail.parameters():
        p.requires_grad_(True)
    return tail.eval()  # BatchNorm statistics frozen; dropout is switched on per training step


def _advance(net, acts: np.ndarray, start: int, stop: int, batch: int = 64) -> np.ndarray:
    """Run frozen blocks[start:stop] over cached activations (any leading shape), once."""
    import torch

    if start == stop:
        return acts
    flat = acts.reshape(-1, *acts.shape[-3:])
    out = []
    with torch.no_grad():
        for i in range(0, len(flat), batch):
            x = torch.from_numpy(flat[i : i + batch].astype(np.float32))
            for block in net._blocks[start:stop]:
                x = block(x)
            out.append(x.numpy().astype(np.float16))
    res = np.concatenate(out)
    return res.reshape(*acts.shape[:-3], *res.shape[1:])


def _validate(tail, xv: np.ndarray, yv: np.ndarray, batch: int = 64) -> tuple[float, float]:
    import torch

    tail.eval()
    with torch.no_grad():
        logits = torch.cat([tail(torch.from_numpy(xv[i : i + batch].astype(np.float32))) for i in range(0, len(xv), batch)])
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(yv)).item()
        acc = float((logits.argmax(1).numpy() == yv).mean())
    return acc, loss


def train_tail(tail, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, views: bool, ft, hp,
               class_weights: np.ndarray | None) -> dict:
    """AdamW on the tail; one view per sample per epoch (view 0 only when `views` is False).
    Early stopping on validation (accuracy, then loss); the best state, epoch 0 included, is restored."""
    import torch

    torch.manual_seed(hp.seed)
    rng = np.random.default_rng(hp.seed)
    params = [p for p in tail.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ft.learning_rate, weight_decay=hp.weight_decay)
    weight = None if class_weights is None else torch.from_numpy(class_weights.astype(np.float32))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing)
    acc, loss = _validate(tail, xv, yv)
    best = ((acc, -loss), copy.deepcopy(tail.state_dict()), 0)
    history = [{"epoch": 0, "val_accuracy": round(acc, 4), "val_loss": round(loss, 4)}]
    waited, n = 0, len(x)
    for epoch in range(1, ft.epochs + 1):
        tail.drop.train()
        order = rng.permutation(n)
        pick = rng.integers(0, x.shape[1], n) if views else np.zeros(n, int)
        for start in range(0, n, ft.batch_size):
            idx = order[start : start + ft.batch_size]
            xb = torch.from_numpy(x[idx, pick[idx]].astype(np.float32))
            loss_b = loss_fn(tail(xb), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss_b.backward()
            opt.step()
        acc, loss = _validate(tail, xv, yv)
        history.append({"epoch": epoch, "val_accuracy": round(acc, 4), "val_loss": round(loss, 4)})
        if (acc, -loss) > best[0]:
            best, waited = ((acc, -loss), copy.deepcopy(tail.state_dict()), epoch), 0
        else:
            waited += 1
            if waited >= ft.patience:
                break
    tail.load_state_dict(best[1])
    return {"val_accuracy": round(best[0][0], 4), "val_loss": round(-best[0][1], 4), "best_epoch": best[2],
            "epochs_run": len(history) - 1, "history": history, "rank": best[0]}


def save_weights(spec: BackboneSpec, net, root) -> tuple:
    """The whole network's state dict (the builder's key format, ImageNet classifier kept so
    strict loading works), written once to <root>/finetuned/<sha256>.pth; -> (path, sha256)."""
    import torch

    state = load_state_dict(resolve_weights(spec.weights))
    trained = net.state_dict()
    unknown = set(trained) - set(state)
    if unknown:
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


def fine_tune(clf, progress: Progress):
    """-> a Classifier whose backbone has its last K blocks fine-tuned (or `clf` itself when K=0
    wins on validation), with `fine_tune` (the report) and `head_only` (the model before) set."""
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
    augmentation = opts.augmentation.augmentation() if views else None
    run = PrefixRunner(prefix_onnx(spec, cut, _prefix_module, opts.cache_dir), opts.threads)
    store = ActivationStore(clf.cache.path) if clf.cache is not None else None
    try:
        def tag_of(v: int) -> str:
            return cache_tag(clf.backbone, augmentation, v, f"cut{cut}")

        a_train = extract_activations(clf.train_samples, views, augmentation, spec, tag_of, run, store, progress,
                                      desc=f"activations train (cut {cut})")
        a_val = extract_activations(clf.val_samples, 0, None, spec, tag_of, run, store, progress,
                                    desc=f"activations val (cut {cut})")[:, 0]
    finally:
        if store is not None:
            store.close()
    activations_s = time.perf_counter() - start_time

    classes = [str(c) for c in clf.head.classes_]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[s.label] for s in clf.train_samples], np.int64)
    yv = np.array([index[s.label] for s in clf.val_samples], np.int64)
    cw = clf.head.class_weights_
    class_weights = None if not cw else np.array([cw[c] for c in clf.head.classes_.tolist()], np.float32)

    base_acc, base_loss = head_only_score(clf)
    rank0 = (base_acc, -base_loss)
    candidates = [{"k": 0, "augmentation": "views" if views else "clean", "val_accuracy": round(base_acc, 4),
                   "val_loss": round(base_loss, 4), "seconds": 0.0}]
    best = (rank0, 0, None, None, None)  # (rank, k, net state, fc, augmentation)
    net = _trunk(spec)
    original = copy.deepcopy(net.state_dict())
    modes = ["clean", "views"] if views else ["clean"]
    previous = None
    for k in depths:
        net.load_state_dict(original)
        start = n_blocks - k
        x, xv = _advance(net, a_train, cut, start), _advance(net, a_val, cut, start)
        results = []
        for mode in modes:
            net.load_state_dict(original)
            t0 = time.perf_counter()
            tail = _tail_module(net, start, clf.head.coef_, clf.head.intercept_, hp.dropout)
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
        "activations": {"computed": run.calls, "reused": (len(clf.train_samples) * (1 + views) + len(clf.val_samples)) - run.calls,
                        "seconds": round(activations_s, 2)},
        "head_only": {"val_accuracy": round(base_acc, 4)},
    }
    if chosen == 0:
        clf.head_only = clf
        report["fine_tuned"] = {"val_accuracy": round(base_acc, 4)}
        report["extra_s"] = round(time.perf_counter() - start_time, 2)
        clf.fine_tune = report
        clf.timings = {**clf.timings, "fine_tune_s": report["extra_s"]}
        progress.log(f"fine-tune: head only kept (val accuracy {base_acc:.4f} not beaten)")
        return clf

    net.load_state_dict(best[2])
    path, sha = save_weights(spec, net, opts.cache_dir)
    new_spec = dataclasses.replace(spec, weights=WeightsSource("file", str(path), sha),
                                   description=f"{spec.description}; last {chosen} blocks fine-tuned")
    head = copy.copy(clf.head)
    head.coef_, head.intercept_ = best[3][0].astype(np.float32), best[3][1].astype(np.float32)
    model = type(clf)(Backbone(new_spec, opts.threads, opts.cache_dir), head, opts, clf.cache, progress)
    model.train_samples, model.val_samples, model.selection = clf.train_samples, clf.val_samples, clf.selection
    model.head_only = clf
    onnx_val = model.evaluate(clf.val_samples)
    report["fine_tuned"] = {"val_accuracy": round(best[0][0], 4), "val_accuracy_onnx": round(onnx_val.accuracy, 4)}
    report["weights"] = str(path)
    report["extra_s"] = round(time.perf_counter() - start_time, 2)
    model.fine_tune = report
    model.timings = {**clf.timings, "fine_tune_s": report["extra_s"]}
    progress.log(f"fine-tune: last {chosen} block(s) chosen, val accuracy {base_acc:.4f} -> {onnx_val.accuracy:.4f}")
    return model
