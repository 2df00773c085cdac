"""`--distill`: a small student learns the full model's soft probabilities, not only the labels.

Teacher: the usual backbone (EfficientNet-Lite0) + head, trained as any run. Its probabilities on
the clean training images and their augmented views (the views the embedding cache already holds:
view v of an image is the same crop/flip/rotation at every input size, seeded by content and v) are
mixed with the label (ALPHA teacher, the rest the smoothed label) and become the student's targets:
- a frozen-trunk student (a truncated EfficientNet-Lite from the budget search, or any backbone
  given): its linear head is trained on those targets over its own cached views;
- small_cnn: the network itself is trained on them (its views are the same images), then its head;
- small_cnn_mel (sounds): the network learns each clip's targets on every window of that clip and
  view (the teacher's probabilities averaged over its own windows: its windows need not match the
  student's), then its head, one row per window (tasks/scratch_audio.py).
The from-scratch twin (the same student trained on the labels alone) is the model the run already
had; the run keeps whichever has the better VALIDATION accuracy, and reports the test accuracy of
the teacher, the twin and the distilled student side by side (the test split chooses nothing).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, replace

import numpy as np

from ..errors import EdgemakerError
from ..progress import Progress
from .options import ClassifierOptions, FineTuneOptions, ModelOptions

ALPHA = 0.7  # weight of the teacher's probabilities in each target; 1 - ALPHA: the (smoothed) label


@dataclass
class DistillRecord:
    teacher: str
    student: str
    alpha: float
    views: int
    teacher_val_accuracy: float
    twin_val_accuracy: float
    distilled_val_accuracy: float
    kept: str = ""
    teacher_test_accuracy: float | None = None
    twin_test_accuracy: float | None = None
    distilled_test_accuracy: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def teacher_options(options: ClassifierOptions) -> ClassifierOptions:
    """The usual model: the task's default backbone at its own size, head only."""
    return replace(options, model=ModelOptions(), fine_tune=FineTuneOptions())


def soft_targets(teacher, student_options: ClassifierOptions, samples, views: int, classes: list[str],
                 progress: Progress, alpha: float = ALPHA) -> np.ndarray:
    """(N, 1 + views, classes): alpha * teacher probabilities (a sound's: the mean over its windows)
    + (1 - alpha) * smoothed one-hot labels."""
    from .classifier import embed_samples

    if list(teacher.classes) != list(classes):
        raise EdgemakerError("--distill: the teacher and the student were trained on different classes")
    emb = embed_samples(teacher.backbone, samples, views, student_options, teacher.cache, progress, "teacher views")
    k = len(classes)
    out = np.zeros((len(samples), 1 + views, k), np.float64)
    count = np.zeros((len(samples), 1 + views, 1))
    np.add.at(out, (emb.owner, emb.view), teacher.head.predict_proba(emb.vectors))
    np.add.at(count, (emb.owner, emb.view), 1.0)
    out = (out / np.maximum(count, 1.0)).astype(np.float32)
    eps = student_options.hparams.label_smoothing or 0.0
    index = {c: i for i, c in enumerate(classes)}
    onehot = np.full((len(samples), k), eps / k, np.float32)
    onehot[np.arange(len(samples)), [index[s.label] for s in samples]] += 1.0 - eps
    return alpha * out + (1.0 - alpha) * onehot[:, None, :]


def distill(cls, twin, splits, options: ClassifierOptions, progress: Progress, cache):
    """(the classifier kept, DistillRecord). `twin`: the student as trained on the labels alone."""
    from .classifier import embed_samples, make_head, label_indices

    start = time.perf_counter()
    train, val, test = splits.train, splits.val, splits.test
    if not len(val):
        raise EdgemakerError("--distill keeps the distilled student only if validation says so, and this run has "
                             "no validation split; use --split with a validation share (e.g. 80/10/10)")
    teacher = cls.create(train, val, teacher_options(options), progress, cache)
    if teacher.spec.name == twin.spec.name and twin.spec.cache_id == teacher.spec.cache_id:
        raise EdgemakerError("--distill: the student is the teacher's own backbone; give a smaller student "
                             "(--backbone small_cnn, or --max-flash/--max-ram for a truncated backbone)")
    views = max(1, options.augmentation.views)
    student_opts = replace(twin.options, augmentation=replace(twin.options.augmentation, enabled=True, views=views))
    classes = twin.classes
    soft = soft_targets(teacher, student_opts, train, views, classes, progress)
    backbone = twin.backbone
    if twin.network.get("trained") == "from scratch":  # small_cnn(_mel): the network learns the targets too
        if twin.spec.audio is not None:
            from .scratch_audio import distill_small_cnn_mel

            backbone = distill_small_cnn_mel(twin, train, val, soft, student_opts, progress)
        else:
            backbone = _distill_small_cnn(twin, train, val, soft, student_opts, progress)
    x_train = embed_samples(backbone, train, views, student_opts, cache, progress, "extract train (student)")
    x_val = embed_samples(backbone, val, 0, student_opts, cache, progress, "extract val (student)")
    validation = (x_val.vectors, label_indices(val, x_val))
    soft_head = replace(twin.options, hparams=replace(twin.options.hparams, head="softmax"))  # learns soft targets
    if backbone.spec.audio is not None:  # a clip has many windows: one row each, with its clip and view's targets
        head = make_head(soft_head, passes=1 + views).fit(x_train.vectors, label_indices(train, x_train),
                                                          validation=validation,
                                                          soft_targets=soft[x_train.owner, x_train.view][:, None])
    else:
        dim = x_train.vectors.shape[1]
        X = np.zeros((len(train), 1 + views, dim), np.float32)
        X[x_train.owner, x_train.view] = x_train.vectors
        head = make_head(soft_head).fit(X, np.array([s.label for s in train]), validation=validation,
                                       soft_targets=soft)
    student = copy.copy(twin)
    student.backbone, student.head, student._sessions = backbone, head, {}
    student.network = {**twin.network, "distilled_from": teacher.spec.name} if twin.network else {}
    rank = {}
    for name, model in (("teacher", teacher), ("twin", twin), ("distilled", student)):
        ev = model.evaluate(val)
        rank[name] = (ev.accuracy, -ev.loss)
    kept = student if rank["distilled"] >= rank["twin"] else twin
    record = DistillRecord(teacher.spec.name, twin.spec.name + (f"@{twin.spec.image.size}" if twin.spec.image else ""),
                           ALPHA, views, rank["teacher"][0], rank["twin"][0], rank["distilled"][0],
                           "distilled" if kept is student else "from-scratch twin (better on validation)")
    record.teacher_test_accuracy = teacher.evaluate(test).accuracy if len(test) else None
    record.twin_test_accuracy = twin.evaluate(test).accuracy if len(test) else None
    record.distilled_test_accuracy = student.evaluate(test).accuracy if len(test) else None
    record.seconds = time.perf_counter() - start
    progress.log(f"distill: test accuracy teacher {record.teacher_test_accuracy}, from-scratch twin "
                 f"{record.twin_test_accuracy}, distilled {record.distilled_test_accuracy}; kept {record.kept}")
    return kept, record


def _distill_small_cnn(twin, train, val, soft: np.ndarray, options: ClassifierOptions, progress: Progress):
    """Train a fresh small_cnn (the twin's width, size, channels) on `soft` over the cached views;
    returns its Backbone (weights saved content-addressed, as tasks/scratch.py does)."""
    import torch

    from ..backbones import small_cnn
    from ..backbones.runtime import Backbone
    from ..backbones.spec import WeightsSource
    from ..training.loop import descend, seeded, state_copy, torch_threads, train_epochs
    from .scratch import ImageSet, save_weights, to_tensor

    spec, net_info = twin.spec, twin.network
    image = spec.image
    aug = options.augmentation.augmentation()
    classes = twin.classes
    x_train = ImageSet(train, image, aug, classes, progress, "load train images (student)")
    x_val = ImageSet(val, image, None, classes, progress, "load val images (student)")
    views = soft.shape[1]
    stacks = [x_train.clean()] + [x_train._stack(aug, v) for v in range(1, views)]  # the teacher's views
    hp = options.hparams
    with torch_threads(options.threads or 1):
        rng = seeded(hp.seed, with_torch=True)
        net = small_cnn.make_network(image.size, net_info["width"], net_info["grayscale"])
        model = torch.nn.Sequential(net, torch.nn.Dropout(hp.dropout), torch.nn.Linear(4 * net_info["width"], len(classes)))
        opt = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, weight_decay=1e-4)
        xv, yv = to_tensor(x_val.clean(), image), torch.from_numpy(x_val.y)
        targets = torch.from_numpy(soft)

        def train_epoch(epoch: int) -> None:
            model.train()
            pick = rng.integers(0, views, len(train))
            order = rng.permutation(len(train))
            for s in range(0, len(train), hp.batch_size):
                idx = order[s:s + hp.batch_size]
                if len(idx) < 2:
                    continue
                xb = to_tensor(np.stack([stacks[pick[i]][i] for i in idx]), image)
                tb = targets[torch.from_numpy(idx), torch.from_numpy(pick[idx])]
                descend(opt, -(tb * torch.log_softmax(model(xb), 1)).sum(1).mean())
            model.eval()

        def validate() -> tuple[float, float]:
            with torch.no_grad():
                logits = model(xv)
            return float((logits.argmax(1) == yv).float().mean()), float(torch.nn.functional.cross_entropy(logits, yv))

        train_epochs(hp.epochs, train_epoch, validate, hp.patience, lambda: state_copy(net), net.load_state_dict,
                     lambda r: progress.log(f"distill small_cnn epoch {r.epoch}: val accuracy {r.val_accuracy:.3f}"))
    path, sha = save_weights(net.state_dict(), small_cnn.NAME, options)
    distilled = dataclasses.replace(spec, weights=WeightsSource("file", str(path), sha),
                                    description=spec.description + ", distilled")
    return Backbone(distilled, options.threads, options.cache_dir)
