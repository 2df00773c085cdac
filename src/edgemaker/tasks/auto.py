"""`--auto`: backbone, input size and head settings chosen by validation accuracy within a time budget.

Why: a user should not have to know that Lite0 at 160 px is as good as Lite2 on their data, or that
a 20 kB small_cnn is enough for digits. Candidates run cheapest first; each is a normal
`Classifier.create` (head settings chosen on validation there), so cached embeddings make a repeat
nearly free. Before each candidate its cost is predicted (rows not yet in the cache x measured
seconds per row, scaled by the backbone's work) and it is skipped when it would not fit what is left
of the budget after the winner's own evaluation and export. Device budgets (--max-flash/--max-ram)
filter candidates by their predicted int8 size and tensor arena; the pipeline confirms on the real
file. The test split is never looked at here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..backbones import get_spec
from ..backbones.spec import BackboneSpec
from ..data.validate import Sample
from ..errors import EdgemakerError
from ..features.extract import cache_tag
from ..progress import Progress
from .options import AutoOptions, ClassifierOptions

# (backbone, input size or None for its own); cheapest first within a modality.
IMAGE_CANDIDATES: tuple[tuple[str, int | None], ...] = (
    ("efficientnet_lite0", 128), ("efficientnet_lite0", 160), ("efficientnet_lite0", None), ("mobilenet_v2", None),
    ("efficientnet_lite1", None), ("efficientnet_lite2", None), ("small_cnn", None),
    ("mobilenet_v1_025", None), ("mobilenet_v1_050", None),
)
AUDIO_CANDIDATES: tuple[tuple[str, int | None], ...] = (("aisfx", None), ("efficientnet_lite0_mel", None),
                                                        ("yamnet", None))
# Seconds per million backbone parameters to convert/quantize one file of each format, measured on
# caltech-dev10 on a busy 2-core machine (Lite0: onnx-int8 21 s, tflite conversion 24 s, tflite-int8
# 26 s); the reserve kept for the winner's export. Formats not listed are taken as cheap as onnx-fp32.
CONVERT_S_PER_MPARAM = {"onnx-int8": 6.5, "onnx-int8-nofrontend": 6.5, "tflite-fp32": 7.5, "tflite-int8": 15.0,
                        "tflite-dynamic": 9.0, "tflite-fp16": 9.0, "c-array": 0.0, "onnx-dynamic": 1.0,
                        "onnx-fp16": 1.0}
CALIBRATION_SAMPLES = 200  # export.stage.quantization_for's image calibration set
# Peak int8 activation bytes per input pixel of an EfficientNet-Lite (the 112x112 stage: 32-channel
# stem output + 16-channel projection + 96-channel expansion live together), used only to skip
# candidates before training; the real file's arena is measured by export/device.py.
LITE_RAM_PER_PIXEL = 96 + 16 + 32
# Measured on caltech-dev10: Lite0@160's tflite-int8 is 4.06 MB for 3.37 M backbone parameters (1.19
# bytes each with the float head); small_cnn's 56.7 kB for 37 k parameters is mostly fixed overhead.
FLASH_PER_PARAM = 1.2
FLASH_OVERHEAD = 16_000


@dataclass
class Candidate:
    backbone: str
    input_size: int | None
    spec: BackboneSpec

    @property
    def name(self) -> str:
        return f"{self.backbone}@{self.spec.image.size}" if self.spec.image else self.backbone

    @property
    def trained(self) -> bool:
        return self.spec.weights.kind == "trained"

    def work(self) -> float:
        """Relative cost of one row (Lite0 at 224 px = 1): parameters x pixels, or parameters for audio."""
        params = self.spec.parameters / 3.4e6
        return params * (self.spec.image.size / 224) ** 2 if self.spec.image else params


@dataclass
class AutoRecord:
    budget_s: float
    tried: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    winner: str | None = None
    why: str = ""
    seconds: float = 0.0
    reserve_s: float = 0.0

    def to_dict(self) -> dict:
        return {"budget_s": self.budget_s, "seconds": round(self.seconds, 2), "export_reserve_s": round(self.reserve_s, 1),
                "winner": self.winner, "why": self.why, "candidates": self.tried, "skipped": self.skipped}


def candidates(modality: str, options: ClassifierOptions) -> list[Candidate]:
    """The search space, limited by what the user fixed (--backbone, --input-size)."""
    pool = IMAGE_CANDIDATES if modality == "image" else AUDIO_CANDIDATES
    fixed_backbone, fixed_size = options.model.backbone, options.model.input_size
    out = []
    for name, size in pool:
        if fixed_backbone and name != fixed_backbone:
            continue
        if fixed_size is not None:
            size = fixed_size
        spec = get_spec(name)
        if size and spec.image is not None:
            spec = spec.with_image_size(size)
        if not any(c.name == Candidate(name, size, spec).name for c in out):
            out.append(Candidate(name, size, spec))
    if fixed_backbone and not out:  # a backbone outside the search space: search only its head settings
        spec = get_spec(fixed_backbone)
        if fixed_size and spec.image is not None:
            spec = spec.with_image_size(fixed_size)
        out.append(Candidate(fixed_backbone, fixed_size, spec))
    return out


def predicted_size(c: Candidate, n_classes: int) -> dict:
    """Int8 flash ~ one byte per backbone parameter (plus quantization parameters, int32 biases and
    metadata: FLASH_PER_PARAM, FLASH_OVERHEAD) plus the float head; RAM for EfficientNet-Lite from the
    input size (see LITE_RAM_PER_PIXEL); None where there is no basis for a prediction."""
    flash = int(FLASH_PER_PARAM * c.spec.parameters + FLASH_OVERHEAD + 4 * (c.spec.feature_dim + 1) * n_classes)
    ram = None
    if c.spec.image is not None and c.backbone.startswith("efficientnet_lite"):
        ram = int(LITE_RAM_PER_PIXEL * (c.spec.image.size // 2) ** 2)
    return {"flash_bytes": flash, "ram_bytes": ram}


def _rows_to_extract(spec: BackboneSpec, samples: Sequence[Sample], views: int, options: ClassifierOptions,
                     cache) -> int:
    """Embeddings of `samples` (clean + `views`) not yet in the cache: what this candidate must compute."""
    if spec.weights.kind == "trained":
        return len(samples) * (1 + views)

    class _Spec:  # cache_tag reads only .spec
        pass

    holder = _Spec()
    holder.spec = spec  # type: ignore[attr-defined]
    aug = options.augmentation
    augmentation = (aug.augmentation() if spec.image else aug.audio_augmentation()) if views else None
    extra = f"silence-{options.silence.enabled}-{options.silence.threshold_db}" if spec.audio else ""
    keys = {(s.content, cache_tag(holder, augmentation, v, extra), v) for s in samples for v in range(1 + views)}
    if cache is None or not keys:
        return len(keys)
    return len(keys) - len(cache.get_many(keys, spec.feature_dim))


class CostModel:
    """Seconds per extracted row of work 1 (Lite0 at 224 px), head-selection seconds, backbone set-up
    seconds: first from a probe, then from what each finished candidate actually took."""

    def __init__(self, probe_s_per_work: float, setup_s: float) -> None:
        self.s_per_work = probe_s_per_work
        self.setup_s = setup_s
        self.head_s_per_row: float | None = None

    def extraction(self, c: Candidate, rows: int) -> float:
        return rows * c.work() * self.s_per_work

    def predict(self, c: Candidate, rows: int, train_rows: int, options: ClassifierOptions) -> float:
        head = (self.head_s_per_row or 0.0) * train_rows
        if c.trained:  # small_cnn: epochs of forward+backward on every training image, then one extraction
            hp = options.hparams
            epochs = min(hp.epochs, 3 * hp.patience)
            return self.setup_s + 3 * epochs * self.extraction(c, train_rows // max(1, 1 + options.augmentation.views)) \
                + self.extraction(c, rows) + head
        return self.setup_s + self.extraction(c, rows) + head

    def learn(self, c: Candidate, rows: int, extract_s: float, train_s: float, train_rows: int) -> None:
        if c.trained:  # its train_s is mostly the network's own training
            return
        if rows and extract_s > 0:
            self.s_per_work = max(extract_s - self.setup_s, 0.0) / (rows * c.work()) or self.s_per_work
        self.head_s_per_row = train_s / max(1, train_rows)


def probe(c: Candidate, options: ClassifierOptions) -> tuple[float, float]:
    """(seconds per row of work 1, backbone set-up seconds): build the cheapest candidate's backbone
    and time a batch through it (twice: the first run warms ONNX Runtime up). Decoding and resizing
    run beside the model in threads, so a factor 1.5 covers them on a busy machine."""
    from ..backbones.runtime import Backbone

    t0 = time.perf_counter()
    backbone = Backbone(c.spec, options.threads, options.cache_dir)
    setup = time.perf_counter() - t0
    if c.spec.image is not None:
        batch = np.random.default_rng(0).integers(0, 256, (16, c.spec.image.size, c.spec.image.size, 3), np.uint8)
    else:
        assert c.spec.audio is not None
        batch = np.zeros((16, c.spec.audio.window_samples), np.float32)
    backbone.embed(batch[:2])
    t1 = time.perf_counter()
    backbone.embed(batch)
    per_row = (time.perf_counter() - t1) / len(batch)
    return 1.5 * per_row / c.work(), setup


def export_reserve(c: Candidate, cost: CostModel, formats: Sequence[str], n_test: int, n_val: int) -> float:
    """Seconds the pipeline needs after the search: embed the test split, convert and quantize each
    format, calibrate, check int8 on validation and run every file on the test split."""
    quantized = any(f in CONVERT_S_PER_MPARAM and "int8" in f for f in formats)
    rows = (1 + len(formats)) * n_test + (CALIBRATION_SAMPLES + 2 * n_val if quantized else 0)
    convert = c.spec.parameters / 1e6 * sum(CONVERT_S_PER_MPARAM.get(f, 0.0) for f in formats)
    return cost.setup_s + cost.extraction(c, rows) + convert


def search(cls, train: Sequence[Sample], validation: Sequence[Sample], options: ClassifierOptions,
           auto: AutoOptions, progress: Progress, cache, n_test: int = 0, max_flash: int | None = None,
           max_ram: int | None = None, started: float | None = None, formats: Sequence[str] = ()):
    """(the winning Classifier, AutoRecord). `started`: perf_counter at the start of the run, so the
    time already spent (validation, splitting) counts against the budget."""
    start = started if started is not None else time.perf_counter()
    if not len(validation):
        raise EdgemakerError("--auto chooses on the validation split, and this run has none; use --split with a "
                             "validation share (e.g. 80/10/10) or add a val/ folder")
    n_classes = len({s.label for s in train})
    views = options.augmentation.views if options.augmentation.enabled is not False else 0
    train_rows = len(train) * (1 + views)
    record = AutoRecord(auto.budget_s)
    pool = candidates(cls.modality, options)
    fitting = []
    for c in pool:
        size = predicted_size(c, n_classes)
        over = []
        if max_flash is not None and size["flash_bytes"] > max_flash:
            over.append(f"predicted int8 size {size['flash_bytes'] / 1e6:.2f} MB > --max-flash {max_flash / 1e6:.2f} MB")
        if max_ram is not None and size["ram_bytes"] is not None and size["ram_bytes"] > max_ram:
            over.append(f"predicted RAM {size['ram_bytes'] / 1e6:.2f} MB > --max-ram {max_ram / 1e6:.2f} MB")
        if over:
            record.skipped.append({"name": c.name, "reason": "; ".join(over), "predicted": size})
        else:
            fitting.append(c)
    if not fitting:
        raise EdgemakerError("--auto: no candidate fits the device budget (" + "; ".join(
            f"{s['name']}: {s['reason']}" for s in record.skipped[:3]) + "); raise --max-flash/--max-ram")

    # The probe needs a pretrained backbone: the cheapest in the pool, even one skipped for the device.
    reference = next((c for c in pool if not c.trained), None) or candidates(cls.modality, ClassifierOptions())[0]
    cost = CostModel(*probe(reference, options))
    best = None
    for i, c in enumerate(fitting):
        rows = _rows_to_extract(c.spec, train, views, options, cache) + _rows_to_extract(c.spec, validation, 0, options, cache)
        predicted = cost.predict(c, rows, train_rows, options)
        reserve = max(record.reserve_s, export_reserve(c, cost, formats, n_test, len(validation)))
        left = auto.budget_s - (time.perf_counter() - start)
        if predicted + reserve > left:
            reason = f"predicted {predicted:.0f} s + {reserve:.0f} s to export, {max(left, 0):.0f} s left of the budget"
            record.skipped.append({"name": c.name, "reason": reason, "predicted_s": round(predicted, 1),
                                   "predicted": predicted_size(c, n_classes)})
            progress.log(f"auto: skip {c.name}: {reason}")
            if best is None and i == 0:
                minimum = predicted + reserve + (time.perf_counter() - start)
                raise EdgemakerError(f"--budget {auto.budget_s:.0f}s is too small for even one candidate: {c.name} "
                                     f"needs about {minimum:.0f} s here; give --budget {int(np.ceil(minimum / 60))}m or more")
            continue
        t0 = time.perf_counter()
        opts = replace(options, model=replace(options.model, backbone=c.backbone, input_size=c.input_size))
        clf = cls.create(train, validation, opts, progress, cache)
        seconds = time.perf_counter() - t0
        val = clf.evaluate(validation)
        cost.learn(c, rows, clf.timings["extract_s"], clf.timings["train_s"], train_rows)
        entry = {"name": c.name, "backbone": clf.spec.name, "input_size": clf.spec.image.size if clf.spec.image else None,
                 "settings": clf.head_selection.chosen if clf.head_selection else {}, "fine_tune": 0,
                 "val_accuracy": round(val.accuracy, 4), "val_loss": round(val.loss, 4),
                 "seconds": round(seconds, 2), "predicted_s": round(predicted, 1), "rows_extracted": rows,
                 "predicted": predicted_size(c, n_classes), "parameters": clf.spec.parameters}
        record.tried.append(entry)
        progress.log(f"auto: {c.name} val accuracy {val.accuracy:.3f} ({seconds:.1f} s, predicted {predicted:.1f} s)")
        rank = (val.accuracy, -val.loss)
        if best is None or rank > best[0]:
            best = (rank, clf, entry)
        record.reserve_s = reserve  # the winner may be any candidate tried: keep the largest reserve
    assert best is not None
    winner = best[2]
    record.winner = winner["name"]
    others = [t for t in record.tried if t is not winner]
    runner = max(others, key=lambda t: (t["val_accuracy"], -t["val_loss"]), default=None)
    record.why = (f"highest validation accuracy {winner['val_accuracy']:.3f}" +
                  (f" (next: {runner['name']} {runner['val_accuracy']:.3f}" +
                   (f", tie broken by lower validation loss {winner['val_loss']:.4f} vs {runner['val_loss']:.4f}"
                    if runner["val_accuracy"] == winner["val_accuracy"] else "") + ")" if runner else
                   " (the only candidate tried)") + "; the test split was not used")
    record.seconds = time.perf_counter() - start
    progress.log(f"auto: chose {record.winner}: {record.why}")
    return best[1], record
