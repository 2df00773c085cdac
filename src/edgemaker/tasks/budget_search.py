"""`--max-flash/--max-ram` as targets: the most accurate model that fits, chosen on train + val only.

Candidates, cheapest first: for images, EfficientNet-Lite0 cut after each block (backbones/truncated.py)
at each input size, MobileNetV1 0.25 and 0.5 cut after each block (backbones/mobilenet_v1.py) at
96-160 px, and small_cnn at a few widths; for sounds, whatever SOUND_CANDIDATES builds (today
efficientnet_lite0_mel and aisfx cut after each block, backbones/sound_trunks.py). Flash, RAM and MACs of every candidate are predicted from
its graph before any training (backbones/footprint.py); those over budget are not trained. For each
input size with a fitting depth, one pass through the whole network embeds every depth at once
(features/depths.py), so the heads of all depths train on cached features; small_cnn is trained
from scratch after them (only the largest fitting width: it costs epochs of training), and for
images only when the screened leader leaves it a chance, with capped epochs (tasks/scratch_gate.py).
The winner is the best validation accuracy among fitting candidates (ties: lower validation loss,
then less flash), except that the best few frozen candidates are re-ranked by k-fold CV over
train + val (tasks/budget_cv.py: a small validation split ties them); its head is then refitted on
train + val unless something compares on validation afterwards. The test split is never looked at.
With --fine-tune, the best fitting truncated image candidate then gets
its last blocks fine-tuned (tasks/budget_finetune.py), kept only when validation improves (off by
default: on caltech-dev10 it cost ~15 minutes and did not raise test accuracy). The pipeline exports the
model and confirms the budget on the real int8 file (export/device.py); before that, an int8 file
refused or measured over the budget passes the choice to the next candidate in the ranking
(tasks/budget_fallback.py). Nothing fitting is one error naming the candidate that came closest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ..data.validate import Sample
from ..errors import EdgemakerError
from ..progress import Progress
from ..evaluate.budget_report import human
from .budget_finetune import rank
from .options import ClassifierOptions, FineTuneOptions

VARIANT = "lite0"  # Lite1/2 cost more per image and are larger at every depth: not searched
# 48/56: under a 128 KB arena no depth past block 1 runs at 64 px (the stem's 32-channel output and the
# first expansion live together), but block 6 does at 56 px; 72: between 64 and 80 for a 256 KB arena.
SIZES = (48, 56, 64, 72, 80, 96, 128, 160, 224)
# MobileNetV1 0.25 (float ImageNet weights) and 0.5 (from uint8), shipped in the package: made for this size.
MOBILENET_V1 = ("025", "050")
MOBILENET_V1_SIZES = (96, 112, 128, 160)
SMALL_CNN = ((8, 32), (16, 32), (16, 64), (32, 64), (32, 96))  # (width, input size)
# What each budget would get (report): common microcontroller classes, flash / RAM.
LADDER = ((64_000, 32_000), (128_000, 64_000), (256_000, 128_000), (512_000, 256_000), (1_000_000, 256_000),
          (2_000_000, 512_000), (8_000_000, 2_000_000))
# Candidates are screened with fixed head settings (one fit each); the winner gets the full selection.
SCREEN = {"weight_decay": 1e-4, "label_smoothing": 0.1}


@dataclass
class Candidate:
    name: str  # e.g. efficientnet_lite0_k5@96, small_cnn_w16@64, efficientnet_lite0_mel_96x64_k8
    backbone: str
    size: int | None  # the image input size (None: the backbone's own, e.g. every sound trunk)
    width: int | None  # set: trained from scratch at this width (small_cnn); None: a frozen trunk + head
    predicted: dict  # flash_bytes, ram_bytes, macs, parameters
    fits: bool = False
    group: str = ""  # frozen trunks with the same group are embedded by one all-depths pass (_all_depths)
    val_accuracy: float | None = None
    val_loss: float | None = None
    seconds: float | None = None
    note: str = ""  # why it was not trained, or trained only in part (tasks/scratch_gate.py)
    cv: dict = field(default_factory=dict)  # a finalist's k-fold score over train + val (tasks/budget_cv.py)

    def to_dict(self) -> dict:
        return {"name": self.name, "backbone": self.backbone, "input_size": self.size, "width": self.width,
                "group": self.group,
                "predicted": self.predicted, "fits": self.fits,
                "val_accuracy": None if self.val_accuracy is None else round(self.val_accuracy, 4),
                "val_loss": None if self.val_loss is None else round(self.val_loss, 4),
                "seconds": None if self.seconds is None else round(self.seconds, 2), "note": self.note,
                "cv": self.cv or None}


@dataclass
class BudgetRecord:
    max_flash: int | None
    max_ram: int | None
    candidates: list[Candidate] = field(default_factory=list)
    winner: str | None = None
    why: str = ""
    seconds: float = 0.0
    confirmed: dict | None = None  # the real int8 file's budget, filled by the pipeline
    fine_tune: dict | None = None  # the finalists' trunks fine-tuned (tasks/budget_finetune.py)
    int8_attempts: list[dict] = field(default_factory=list)  # int8 files tried in order (tasks/budget_fallback.py)

    def ladder(self) -> list[dict]:
        """For common budgets: the best validated candidate that would fit (among those trained here)."""
        out = []
        tried = [c for c in self.candidates if c.val_accuracy is not None]
        for flash, ram in LADDER:
            ok = [c for c in tried if c.predicted["flash_bytes"] <= flash and c.predicted["ram_bytes"] <= ram]
            best = max(ok, key=lambda c: (c.val_accuracy, -c.predicted["flash_bytes"]), default=None)
            out.append({"max_flash_bytes": flash, "max_ram_bytes": ram, "best": best.name if best else None,
                        "val_accuracy": round(best.val_accuracy, 4) if best else None})
        return out

    def to_dict(self) -> dict:
        return {"max_flash_bytes": self.max_flash, "max_ram_bytes": self.max_ram, "winner": self.winner,
                "why": self.why, "seconds": round(self.seconds, 2), "confirmed": self.confirmed,
                "fine_tune": self.fine_tune, "int8_attempts": self.int8_attempts,
                "candidates": [c.to_dict() for c in self.candidates], "ladder": self.ladder()}


def _fits(pred: dict, max_flash: int | None, max_ram: int | None) -> bool:
    return (max_flash is None or pred["flash_bytes"] <= max_flash) and (max_ram is None or pred["ram_bytes"] <= max_ram)


def _excess(pred: dict, max_flash: int | None, max_ram: int | None) -> float:
    return max(pred["flash_bytes"] / max_flash if max_flash else 0.0, pred["ram_bytes"] / max_ram if max_ram else 0.0)


def _Full(net):
    import torch

    class Full(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return Full()


def mobilenet_v1_candidates(n_classes: int, sizes: Sequence[int] = MOBILENET_V1_SIZES,
                            variants: Sequence[str] = MOBILENET_V1, gray: bool = False) -> list[Candidate]:
    """The shipped MobileNetV1s (backbones/mobilenet_v1.py) cut after each block, at each input size
    (`gray`: their one-channel twins, for --grayscale on)."""
    from ..backbones import mobilenet_v1 as v1
    from ..backbones.footprint import predict_blocks

    out = []
    for variant in variants:
        net = v1.with_gray_input(v1.trunk(variant, in_channels=1)) if gray else v1.trunk(variant)
        dims = v1.channels(v1.VARIANTS[variant].width)
        for size in sizes:
            for k, fp in enumerate(predict_blocks(net, size, n_classes, dims), 1):
                name = v1.cut_name(variant, k, gray)
                out.append(Candidate(f"{name}@{size}", name, size, None, fp.to_dict(),
                                     group=f"{v1.cut_name(variant, v1.BLOCKS, gray)}@{size}"))
    return out


def candidates(n_classes: int, sizes: Sequence[int] = SIZES, small: Sequence[tuple[int, int]] = SMALL_CNN,
               variant: str = VARIANT, mobilenet_sizes: Sequence[int] = MOBILENET_V1_SIZES,
               gray: bool = False) -> list[Candidate]:
    """Every candidate with its predicted footprint (no weights loaded, no training), cheapest flash first."""
    from ..backbones import get_spec, small_cnn
    from ..backbones.footprint import predict, predict_depths
    from ..backbones.truncated import trunk, depth_dims, truncated_name

    dims = depth_dims(variant)
    full = get_spec(f"efficientnet_{variant}")
    out = []
    for size in sizes:
        net = trunk(variant, size)
        for k, fp in enumerate(predict_depths(net, size, n_classes, dims), 1):
            out.append(Candidate(f"{truncated_name(variant, k)}@{size}", truncated_name(variant, k), size, None,
                                 fp.to_dict(), group=f"{variant}@{size}"))
        fp = predict(_Full(net), size, n_classes, full.feature_dim)  # the whole backbone, as registered
        out.append(Candidate(f"{full.name}@{size}", full.name, size, None, fp.to_dict(), group=f"{variant}@{size}"))
    out += mobilenet_v1_candidates(n_classes, mobilenet_sizes, gray=gray)
    for width, size in small:
        fp = predict(small_cnn.make_network(size, width).fuse(), size, n_classes, 4 * width)
        out.append(Candidate(f"small_cnn_w{width}@{size}", small_cnn.NAME, size, width, fp.to_dict()))
    return sorted(out, key=lambda c: (c.predicted["flash_bytes"], c.predicted["ram_bytes"]))


def sound_trunk_candidates(n_classes: int) -> list[Candidate]:
    """efficientnet_lite0_mel (at each patch size) and aisfx, cut after each block: one group per family."""
    from ..backbones.sound_trunks import families, footprints

    return [Candidate(spec.name, spec.name, None, None, fp.to_dict(), group=f"sound:{fam.key}")
            for fam in families() for spec, fp in zip(fam.specs, footprints(fam, n_classes))]


SMALL_CNN_MEL = (8, 16, 32)  # small_cnn_mel widths (its input is fixed: 1.04 s windows, 64 x 40 log-mel)


def small_cnn_mel_candidates(n_classes: int) -> list[Candidate]:
    """small_cnn_mel (trained from scratch) at each width; like every full-int8 sound file its
    tflite-int8 takes the log-mel window, so that is the graph input predicted."""
    from ..backbones import small_cnn_mel
    from ..backbones.footprint import footprint_of, trace_ops
    from ..backbones.frontends import SMALL_LOGMEL

    shape = (1, small_cnn_mel.FRAMES, SMALL_LOGMEL.n_mels)
    out = []
    for width in SMALL_CNN_MEL:
        ops, _ = trace_ops(small_cnn_mel.make_network(width).fuse(), shape)
        *convs, dense = ops
        convs.append((convs[-1][1], convs[-1][4] or dense[0], 0, 0, 0, 0))  # the global mean before the dense
        fp = footprint_of([*convs, dense], 0, n_classes, 4 * width, input_elements=shape[1] * shape[2])
        out.append(Candidate(f"{small_cnn_mel.NAME}_w{width}", small_cnn_mel.NAME, None, width, fp.to_dict(),
                             group="sound:small_cnn_mel"))
    return out


# Builders of the sound candidates, each (n_classes) -> [Candidate]: frozen trunks (width None, a group
# embedded in one pass by _all_depths) or networks trained from scratch (width set: `train` runs with
# --backbone c.backbone --width c.width). A from-scratch sound CNN joins by appending its builder here.
SOUND_CANDIDATES: list[Callable[[int], list[Candidate]]] = [sound_trunk_candidates, small_cnn_mel_candidates]


def sound_candidates(n_classes: int) -> list[Candidate]:
    out = [c for build in SOUND_CANDIDATES for c in build(n_classes)]
    return sorted(out, key=lambda c: (c.predicted["flash_bytes"], c.predicted["ram_bytes"]))


def _all_depths(group: str, options: ClassifierOptions):
    """The one-pass extractor of a group of frozen trunks (features/depths.py)."""
    from ..features.depths import AllDepthsBackbone, SoundAllDepthsBackbone

    if group.startswith("sound:"):
        from ..backbones.sound_trunks import families

        family = next(f for f in families() if f.key == group[len("sound:"):])
        return SoundAllDepthsBackbone(family, options.threads, options.cache_dir)
    variant, size = group.split("@")
    return AllDepthsBackbone(variant, int(size), options.threads, options.cache_dir)


def search(cls, train: Sequence[Sample], validation: Sequence[Sample], options: ClassifierOptions,
           progress: Progress, cache, max_flash: int | None, max_ram: int | None, finalists: int | None = None,
           refit_on_val: bool = False):
    """(the winning Classifier, BudgetRecord); raises EdgemakerError when no candidate fits. `finalists`:
    how many of the best fitting truncated image candidates get their trunk fine-tuned (default:
    budget_finetune.FINALISTS when options.fine_tune is active (`--fine-tune`), else none).
    `refit_on_val`: the winner's CV-chosen head is refitted on train + val (as `edgemaker train`'s
    plain path does) when nothing compares models on validation afterwards (no fine-tuning here)."""
    from ..features.depths import extract_all_depths
    from . import budget_finetune

    start = time.perf_counter()
    if finalists is None:  # --fine-tune with a budget target: the finalist's trunk, not the full backbone's
        finalists = budget_finetune.FINALISTS if options.fine_tune.active else 0
    if finalists and cls.modality != "image":
        progress.log("budget: --fine-tune tunes truncated image trunks only; sound candidates keep their heads")
        finalists = 0
    options = replace(options, fine_tune=FineTuneOptions())
    if not len(validation):
        raise EdgemakerError("--max-flash/--max-ram choose on the validation split, and this run has none; use "
                             "--split with a validation share (e.g. 80/10/10)")
    n_classes = len({s.label for s in train})
    record = BudgetRecord(max_flash, max_ram, candidates(n_classes, SIZES, SMALL_CNN, mobilenet_sizes=MOBILENET_V1_SIZES,
                                                     gray=options.model.grayscale == "on")
                          if cls.modality == "image"
                          else sound_candidates(n_classes))
    for c in record.candidates:
        c.fits = _fits(c.predicted, max_flash, max_ram)
    fitting = [c for c in record.candidates if c.fits]
    if not fitting:
        closest = min(record.candidates, key=lambda c: _excess(c.predicted, max_flash, max_ram))
        raise EdgemakerError(
            f"no model fits --max-flash {human(max_flash)} --max-ram {human(max_ram)}: the closest is {closest.name} "
            f"(predicted flash {human(closest.predicted['flash_bytes'])}, RAM {human(closest.predicted['ram_bytes'])}); "
            "raise the budget to at least that")
    progress.log(f"budget: {len(fitting)} of {len(record.candidates)} candidates fit (predicted)")
    screen = replace(options, hparams=replace(options.hparams, cv_folds=0, **{k: v for k, v in SCREEN.items()  # one fit
                                                                              if getattr(options.hparams, k) is None}),
                     augmentation=replace(options.augmentation, enabled=options.augmentation.enabled is not False))
    views = screen.augmentation.active_views
    aug = (screen.augmentation.augmentation() if cls.modality == "image" else screen.augmentation.audio_augmentation()) \
        if views else None
    best = None
    screened: dict = {}  # candidate name -> its spec (embeddings cached)
    silence = options.silence
    groups = worth_embedding(fitting)
    skipped = sorted({c.group for c in fitting if c.width is None} - set(groups))
    if skipped:
        progress.log(f"budget: not embedding {', '.join(skipped)}: a larger input fits as deep a cut")
    for group in groups:
        t0 = time.perf_counter()
        backbone = _all_depths(group, options)
        extract_all_depths(train, backbone, cache, views, aug, progress, f"extract every depth {group} (train)",
                           silence=silence)
        extract_all_depths(validation, backbone, cache, 0, None, progress, f"extract every depth {group} (val)",
                           silence=silence)
        progress.log(f"budget: every depth of {group} embedded in {time.perf_counter() - t0:.1f} s")
        specs = {spec.name: spec for spec in backbone.specs}
        for c in [c for c in record.candidates if c.group == group and c.width is None]:
            spec = screened[c.name] = specs[c.backbone]
            t1 = time.perf_counter()
            c.val_accuracy, c.val_loss = _screen(spec, train, validation, screen, cache, progress)
            c.seconds = time.perf_counter() - t1
            progress.log(f"budget: {c.name} val accuracy {c.val_accuracy:.3f} (predicted flash "
                         f"{human(c.predicted['flash_bytes'])}, RAM {human(c.predicted['ram_bytes'])}"
                         f"{'' if c.fits else ', over budget'})")
            if c.fits and (best is None or rank(c) > rank(best[0])):
                best = (c, None)
    top_val = best[0] if best else None  # the from-scratch gate's leader: the best by validation
    k = options.hparams.folds_for(len(train) + len(validation))
    if best is not None and k >= 2:  # the finalists' tie broken on more evidence than one validation split
        best = (_cv_rerank(record, screened, train, validation, screen, k, cache, progress), None)
    small = [c for c in fitting if c.width is not None]
    if small:  # from scratch costs epochs: only the largest fitting width, gated for images (scratch_gate.py)
        c = max(small, key=lambda c: (c.predicted["flash_bytes"], c.size))
        clf = _from_scratch(cls, c, top_val, train, validation, options, progress, cache)
        if clf is not None and (best is None or rank(c) > rank(best[0])):
            best = (c, clf)
    assert best is not None
    winner = best[0]
    record.winner = winner.name
    scored = sorted((c for c in fitting if c.val_accuracy is not None), key=rank, reverse=True)
    runner = next((c for c in scored if c is not winner), None)
    record.why = _why(winner, runner, scored)
    progress.log(f"budget: chose {winner.name}: {record.why}")
    if best[1] is not None:
        clf = best[1]
    else:  # the winner again with the full head-settings selection (its features are cached)
        clf = build(cls, winner, train, validation, options, progress, cache, refit_on_val and not finalists)
    if finalists:  # accuracy for no bytes: the finalists' trunks trained on this data
        clf, record.fine_tune = budget_finetune.improve(cls, record, clf, train, validation, options, progress,
                                                        cache, finalists)
        if record.fine_tune["kept"]:
            record.winner = record.fine_tune["kept"]
            record.why += (f"; then {record.winner} with its last blocks fine-tuned on this data: validation "
                           f"{record.fine_tune['head_only']['val_accuracy']:.3f} -> {record.fine_tune['val_accuracy']:.3f}")
            progress.log(f"budget: kept {record.winner} with its trunk fine-tuned")
    record.seconds = time.perf_counter() - start
    return clf, record


def build(cls, c: Candidate, train, validation, options: ClassifierOptions, progress: Progress, cache,
          refit_on_val: bool):
    """A frozen candidate's Classifier with the full head-settings selection (its features are cached)."""
    return cls.create(train, validation, replace(
        options, model=replace(options.model, backbone=c.backbone, input_size=c.size), fine_tune=FineTuneOptions(),
        hparams=replace(options.hparams, refit_on_val=refit_on_val)), progress, cache)


def worth_embedding(fitting: Sequence[Candidate]) -> list[str]:
    """Groups (one all-depths extraction pass each) worth embedding: an image group (one network at
    one input size) is skipped when the same network at a larger size fits a cut at least as deep. A
    heuristic that saves the search's main cost: frozen features gain with depth far more than between
    neighbouring sizes (on caltech-dev10, 64 vs 80 px at the same depth differ by 0-2 validation images
    either way). Sound groups (one fixed input each) are always embedded."""
    deepest: dict[str, tuple[str, int, int]] = {}  # group -> (network, size, most parameters fitting)
    for c in fitting:
        if c.width is None:
            net, size = (c.group.split("@")[0], c.size) if c.size is not None else (c.group, 0)
            depth = max(deepest.get(c.group, (net, size, 0))[2], c.predicted["parameters"])
            deepest[c.group] = (net, size, depth)  # more weights = a deeper cut, within one network
    return [g for g, (net, size, depth) in deepest.items()
            if size == 0 or not any(n == net and t > size and d >= depth for n, t, d in deepest.values())]


class _Cached:
    """A backbone whose every embedding is already in the cache (features/depths.py filled it)."""

    def __init__(self, spec) -> None:
        self.spec = spec

    def embed(self, batch):
        raise RuntimeError(f"{self.spec.name}: embedding expected in the cache")


def _screen(spec, train, validation, options: ClassifierOptions, cache, progress) -> tuple[float, float]:
    """(val accuracy, val loss) of one head fitted on cached embeddings: no graph built, no extraction."""
    from ..evaluate.metrics import evaluate_predictions
    from .classifier import embed_samples, choose_head

    holder = _Cached(spec)
    x_train = embed_samples(holder, train, options.augmentation.active_views, options, cache, progress, "cached train")
    x_val = embed_samples(holder, validation, 0, options, cache, progress, "cached val")
    head, _ = choose_head(options, train, validation, x_train, x_val)
    ev = evaluate_predictions([str(c) for c in head.classes_], [s.label for s in validation],
                              x_val.aggregate(head.predict_proba(x_val.vectors)))
    return ev.accuracy, ev.loss


def _cv_rerank(record: BudgetRecord, screened: dict, train, validation, screen: ClassifierOptions, k: int, cache,
               progress: Progress) -> Candidate:
    """The best of budget_cv.FINALISTS screened candidates by k-fold CV over train + val (their CV in c.cv)."""
    from . import budget_cv
    from .classifier import embed_samples

    top = budget_cv.finalists(record.candidates, rank)
    if len(top) < 2:
        return top[0]
    for c in top:
        holder = _Cached(screened[c.name])
        c.cv = budget_cv.cross_validate(
            lambda samples, views, desc: embed_samples(holder, samples, views, screen, cache, progress, desc),
            train, validation, screen, k)
        if c.cv:
            progress.log(f"budget: {c.name} {c.cv['folds']}-fold CV over train + val: {c.cv['mean']:.3f} "
                         f"(sd {c.cv['std']:.3f}, loss {c.cv['mean_loss']:.3f})")
    return max(top, key=budget_cv.cv_rank) if any(c.cv for c in top) else top[0]


def _why(winner: Candidate, runner: Candidate | None, scored: list[Candidate]) -> str:
    if winner.cv:
        cv = sorted((c for c in scored if c.cv), key=lambda c: (c.cv["mean"], -c.cv["mean_loss"]), reverse=True)
        other = next((c for c in cv if c is not winner), None)
        return (f"best {winner.cv['folds']}-fold cross-validation accuracy over train + val {winner.cv['mean']:.3f} "
                f"(sd {winner.cv['std']:.3f}) of the {len(cv)} best fitting candidates by validation accuracy"
                + (f" (next: {other.name} {other.cv['mean']:.3f})" if other else "")
                + f"; validation {winner.val_accuracy:.3f}; the test split was not used")
    return (f"highest validation accuracy {winner.val_accuracy:.3f} of {len(scored)} fitting candidates"
            + (f" (next: {runner.name} {runner.val_accuracy:.3f})" if runner else "")
            + "; the test split was not used")


def _from_scratch(cls, c: Candidate, leader: Candidate | None, train, validation, options: ClassifierOptions,
                  progress: Progress, cache):
    """The from-scratch candidate trained (its Classifier), or None with c.note saying why not:
    images follow tasks/scratch_gate.py (skipped, capped, given up against the screened leader)."""
    from . import scratch_gate

    t1 = time.perf_counter()
    opts = replace(options, model=replace(options.model, backbone=c.backbone, input_size=c.size, width=c.width))
    watch = progress
    if cls.modality == "image":
        lead_name, lead_acc = (leader.name, leader.val_accuracy) if leader else (None, None)
        c.note = scratch_gate.skip_reason(lead_name, lead_acc) or ""
        if c.note:
            progress.log(f"budget: {c.name} {c.note}")
            return None
        opts = scratch_gate.capped(opts)
        c.note = f"trained from scratch for at most {opts.hparams.epochs} epochs"
        watch = scratch_gate.Watch(progress, c.backbone, lead_acc)
    try:
        clf = cls.create(train, validation, opts, watch, cache)
    except scratch_gate.GaveUp as stop:
        assert leader is not None and leader.val_accuracy is not None
        c.note, c.seconds = scratch_gate.gave_up_note(stop, leader.name, leader.val_accuracy), time.perf_counter() - t1
        progress.log(f"budget: {c.name} {c.note}")
        return None
    _score(c, clf, validation, time.perf_counter() - t1)
    progress.log(f"budget: {c.name} (from scratch) val accuracy {c.val_accuracy:.3f}")
    return clf


def _score(c: Candidate, clf, validation, seconds: float) -> None:
    ev = clf.evaluate(validation)
    c.val_accuracy, c.val_loss, c.seconds = ev.accuracy, ev.loss, seconds


def confirm(record: BudgetRecord, exports: list[dict]) -> None:
    """The winner's real int8 file measured (export/device.py budget): flash, RAM, MACs beside the prediction."""
    real = next((e for e in exports if e["format"] == "tflite-int8"), None)
    winner = next((c for c in record.candidates if c.name == record.winner), None)
    if real is None or winner is None:
        return
    ram = real.get("arena_bytes") or real["peak_ram_bytes"]  # TFLM's measured arena when it ran
    record.confirmed = {"file": real["path"], "flash_bytes": real["size_bytes"], "ram_bytes": ram,
                        "ram_source": "measured by TFLite Micro" if real.get("arena_bytes") else "estimated",
                        "macs": real["macs"], "predicted": winner.predicted,
                        "fits": _fits({"flash_bytes": real["size_bytes"], "ram_bytes": ram or 0},
                                      record.max_flash, record.max_ram)}
