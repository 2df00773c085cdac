"""Train small_cnn_mel from random initialisation on the training clips (the sound side of
tasks/scratch.py), on their labels or, for --distill, on a teacher's probabilities.

Windows are cut exactly as extraction and `predict` cut them (clip_windows: silence removal, and
the training views' gain / noise / time shift seeded by content and view, so view v is the view the
teacher saw), turned into log-mel once by the numpy front end (the graph computes the same), and
held in memory as float16. Each epoch takes one view per clip at random and mixes pairs of windows
(mixup on log-mel, the targets mixed alike: cheap, and it fits sound, where events overlap). Early
stopping on CLIP-level validation accuracy (each clip's window probabilities averaged, as
evaluation does; ties: lower loss), best epoch restored. Weights are saved content-addressed like
small_cnn's, so export needs no new path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backbones.spec import BackboneSpec, WeightsSource
from ..data.validate import Sample
from ..errors import DataError, EdgemakerError
from ..heads.softmax import SoftmaxHead
from ..progress import Progress
from ..training.loop import EpochRecord, descend, seeded, state_copy, torch_threads, train_epochs
from .options import ClassifierOptions

MIXUP_ALPHA = 0.2  # Beta(a, a) mixing weights: mostly near 0 or 1, a mild regulariser
MAX_WINDOWS_IN_MEMORY = 2_000_000  # float16 log-mel windows (~10 GB); more: a one-line error, not a swap storm


class MelWindows:
    """Log-mel windows of clips for views 0 (clean) .. `views`: per view, (rows, frames, mels)
    float16 and the clip each row belongs to."""

    def __init__(self, samples: Sequence[Sample], spec: BackboneSpec, views: int, augmentation, silence,
                 classes: Sequence[str], progress: Progress, desc: str, workers: int = 4) -> None:
        from ..backbones.audio_backbones import FRONTENDS
        from ..data.audio import AudioDecodeError, clip_windows
        from ..features.extract import read_verified, view_seed

        assert spec.audio is not None
        self.samples = list(samples)
        index = {c: i for i, c in enumerate(classes)}
        self.y = np.array([index[s.label] for s in self.samples], np.int64)
        self.n_classes, self.n_views = len(classes), 1 + views
        frontend = FRONTENDS[spec.name]
        bar = progress.bar(len(self.samples), desc)

        def load(sample: Sample) -> list[np.ndarray]:
            data = read_verified(sample)
            out = []
            for v in range(self.n_views):
                try:
                    w = list(clip_windows(data, spec.audio, silence, augmentation if v else None,
                                          view_seed(sample.content, v)))
                except AudioDecodeError as exc:
                    raise DataError(f"{sample.path}: {exc}") from None
                if not w:
                    raise DataError(f"{sample.path}: no audio windows; the clip may be empty")
                out.append(frontend.compute(np.stack(w)).astype(np.float16))
            bar.update()
            return out

        with ThreadPoolExecutor(workers) as pool:
            per_clip = list(pool.map(load, self.samples))
        bar.close()
        shape = (0, frontend.frames(spec.audio.window_samples), frontend.n_mels)
        self.mel, self.owner = [], []
        for v in range(self.n_views):
            blocks = [clip[v] for clip in per_clip]
            self.mel.append(np.concatenate(blocks) if blocks else np.zeros(shape, np.float16))
            self.owner.append(np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)]) if blocks
                              else np.zeros(0, int))
        if sum(len(m) for m in self.mel) > MAX_WINDOWS_IN_MEMORY:
            raise EdgemakerError(f"{desc}: more than {MAX_WINDOWS_IN_MEMORY:,} log-mel windows to train "
                                 "small_cnn_mel on; use fewer augmentation views (--views) or a subset of the data")

    def __len__(self) -> int:
        return len(self.samples)

    def epoch_rows(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every window of one randomly chosen view per clip: (log-mel float16, clip, view)."""
        pick = rng.integers(0, self.n_views, len(self))
        xs, owners, views = [], [], []
        for v in range(self.n_views):
            sel = np.flatnonzero(pick[self.owner[v]] == v)
            xs.append(self.mel[v][sel])
            owners.append(self.owner[v][sel])
            views.append(np.full(len(sel), v))
        return np.concatenate(xs), np.concatenate(owners), np.concatenate(views)


def clip_scores(model, val: MelWindows, batch: int = 256) -> tuple[float, float]:
    """(clip accuracy, clip log loss): each clip's window probabilities averaged, as evaluation does."""
    import torch

    x = val.mel[0]
    with torch.no_grad():
        proba = np.concatenate([torch.softmax(model(torch.from_numpy(x[i:i + batch].astype(np.float32))), 1).numpy()
                                for i in range(0, len(x), batch)])
    clip = np.zeros((len(val), val.n_classes))
    np.add.at(clip, val.owner[0], proba)
    clip /= np.maximum(np.bincount(val.owner[0], minlength=len(val)), 1)[:, None]
    accuracy = float((clip.argmax(1) == val.y).mean())
    loss = float(-np.log(np.clip(clip[np.arange(len(val)), val.y], 1e-7, 1.0)).mean())
    return accuracy, loss


def fit_mel_network(width: int, train: MelWindows, val: MelWindows, options: ClassifierOptions, progress: Progress,
                    tag: str, soft: np.ndarray | None = None) -> tuple[object, list[EpochRecord]]:
    """A fresh small_cnn_mel trained on `train` (targets: smoothed labels, or `soft` (clips, views,
    classes) probabilities for distillation); returns (its feature network, the epochs)."""
    with torch_threads(options.threads or 1):  # small network: one thread is fastest (see scratch.py)
        return _fit(width, train, val, options, progress, tag, soft)


def _fit(width, train, val, options, progress, tag, soft):
    import torch

    from ..backbones import small_cnn_mel
    from ..heads.selection import DEFAULTS

    hp = options.hparams
    settings = {**DEFAULTS, **hp.given()}
    rng = seeded(hp.seed, with_torch=True)
    k = train.n_classes
    net = small_cnn_mel.make_network(width)
    model = torch.nn.Sequential(net, torch.nn.Dropout(hp.dropout), torch.nn.Linear(4 * width, k))
    opt = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, weight_decay=settings["weight_decay"])
    if soft is None:
        eps = settings["label_smoothing"]
        hard = np.full((len(train), k), eps / k, np.float32)
        hard[np.arange(len(train)), train.y] += 1.0 - eps
        soft = np.repeat(hard[:, None], train.n_views, axis=1)
    targets = torch.from_numpy(np.asarray(soft, np.float32))
    weights = SoftmaxHead(class_weight=hp.class_weights)._sample_weights(train.y, k)  # per clip, the head's rule
    clip_w = torch.from_numpy(np.ones(len(train), np.float32) if weights is None else weights[train.y])

    def train_epoch(epoch: int) -> tuple[float, float]:
        model.train()
        x, owner, view = train.epoch_rows(rng)
        order = rng.permutation(len(x))
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(x), hp.batch_size):
            idx = order[start:start + hp.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two windows
            xb = torch.from_numpy(x[idx].astype(np.float32))
            tb = targets[owner[idx], view[idx]]
            wb = clip_w[owner[idx]]
            lam = float(rng.beta(MIXUP_ALPHA, MIXUP_ALPHA))
            mate = torch.from_numpy(rng.permutation(len(idx)))
            logits = model(lam * xb + (1 - lam) * xb[mate])
            per = -((lam * tb + (1 - lam) * tb[mate]) * torch.log_softmax(logits, 1)).sum(1)
            loss = (per * wb).sum() / wb.sum()
            descend(opt, loss)
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == tb.argmax(1)).sum())
            seen += len(idx)
        model.eval()
        return total / max(seen, 1), correct / max(seen, 1)

    fit = train_epochs(hp.epochs, train_epoch, (lambda: clip_scores(model, val)) if len(val) else None, hp.patience,
                       lambda: state_copy(model), model.load_state_dict, lambda r: progress.epoch(tag, r))
    model.eval()
    return net, fit.history


def window_sets(spec: BackboneSpec, train: Sequence[Sample], validation: Sequence[Sample], options: ClassifierOptions,
                progress: Progress, views: int | None = None) -> tuple[MelWindows, MelWindows, list[str]]:
    """The training clips' windows with `views` augmented views (default: the run's) and the clean validation ones."""
    from ..features.extract import default_silence

    classes = sorted({s.label for s in train})
    missing = sorted({s.label for s in validation} - set(classes))
    if missing:
        raise EdgemakerError(f"class '{missing[0]}' has validation clips but no training clips; add some")
    views = options.augmentation.active_views if views is None else views
    silence = default_silence(spec, options.silence)
    aug = options.augmentation.audio_augmentation()
    return (MelWindows(train, spec, views, aug, silence, classes, progress, "log-mel train clips"),
            MelWindows(validation, spec, 0, None, silence, classes, progress, "log-mel val clips"), classes)


def save_trained(net, spec: BackboneSpec, width: int, options: ClassifierOptions, note: str = "") -> BackboneSpec:
    """The network's weights saved content-addressed; the spec that points at them (kind="file")."""
    from ..backbones import small_cnn_mel
    from .scratch import save_weights

    path, sha = save_weights(net.state_dict(), small_cnn_mel.NAME, options)
    return dataclasses.replace(spec, weights=WeightsSource("file", str(path), sha), feature_dim=4 * width,
                               parameters=small_cnn_mel.parameter_count(width),
                               description=f"small CNN trained from scratch on log-mel: width {width}{note}")


def train_small_cnn_mel(spec: BackboneSpec, train: Sequence[Sample], validation: Sequence[Sample],
                        options: ClassifierOptions, progress: Progress) -> tuple[BackboneSpec, dict]:
    """Train small_cnn_mel from random initialisation; returns (the trained spec, a training summary)."""
    from ..backbones import small_cnn_mel

    t0 = time.perf_counter()
    if options.model.input_size:
        raise EdgemakerError("--input-size is for images; small_cnn_mel takes 1.04 s windows of 16 kHz sound "
                             "(drop --input-size)")
    width = options.model.width
    x_train, x_val, _ = window_sets(spec, train, validation, options, progress)
    net, history = fit_mel_network(width, x_train, x_val, options, progress, small_cnn_mel.NAME)
    trained = save_trained(net, spec, width, options)
    best = max(history, key=lambda r: (r.val_accuracy or 0.0, -(r.val_loss or 0.0))) if len(x_val) else history[-1]
    summary = {"trained": "from scratch", "width": width, "views": x_train.n_views - 1,
               "train_windows": int(sum(len(m) for m in x_train.mel)), "epochs_run": len(history),
               "best_epoch": best.epoch, "val_accuracy": best.val_accuracy,
               "train_s": round(time.perf_counter() - t0, 3)}
    return trained, summary


def distill_small_cnn_mel(twin, train: Sequence[Sample], val: Sequence[Sample], soft: np.ndarray,
                          options: ClassifierOptions, progress: Progress):
    """A fresh small_cnn_mel (the twin's width) trained on `soft` (clips, 1 + views, classes) over the
    same views the teacher saw; returns its Backbone (tasks/distill.py fits the head)."""
    from ..backbones.runtime import Backbone

    width = twin.network["width"]
    x_train, x_val, _ = window_sets(twin.spec, train, val, options, progress, views=soft.shape[1] - 1)
    net, _ = fit_mel_network(width, x_train, x_val, options, progress, "small_cnn_mel (distilled)", soft)
    distilled = save_trained(net, twin.spec, width, options, ", distilled")
    return Backbone(distilled, options.threads, options.cache_dir)
