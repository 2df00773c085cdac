"""Classifiers on a frozen backbone: cached window embeddings, a trained softmax head, exports.

One implementation for both modalities; an image is a sample with one window, a sound clip a
sample with many, and sample-level results are the mean of its windows' probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backbones import DEFAULT_AUDIO_BACKBONES, DEFAULT_IMAGE_BACKBONE, get_spec
from ..backbones.runtime import Backbone, export_backbone_onnx
from ..backbones.spec import Modality
from ..data.validate import Sample
from ..errors import EdgemakerError
from ..evaluate.metrics import Evaluation, evaluate_predictions
from ..export import onnx_model
from ..export.quantization import Quantization
from ..features.cache import FeatureCache
from ..features.extract import Embeddings, extract_embeddings
from ..heads.softmax import SoftmaxHead
from ..progress import Progress, SilentProgress
from .options import ClassifierOptions

EXPORT_NAMES = {"none": "model_fp32", "int8": "model_int8", "dynamic": "model_dynamic", "float16": "model_fp16"}


def _head(options: ClassifierOptions) -> SoftmaxHead:
    hp = options.hparams
    return SoftmaxHead(
        epochs=hp.epochs, batch_size=hp.batch_size, learning_rate=hp.learning_rate, dropout=hp.dropout,
        label_smoothing=hp.label_smoothing, weight_decay=hp.weight_decay, class_weight=hp.class_weights,
        patience=hp.patience, random_state=hp.seed,
    )


def _labels(samples: Sequence[Sample], emb: Embeddings) -> np.ndarray:
    return np.array([samples[i].label for i in emb.owner])


class Classifier:
    modality: Modality = "image"

    def __init__(self, backbone: Backbone, head: SoftmaxHead, options: ClassifierOptions,
                 cache: FeatureCache | None, progress: Progress) -> None:
        self.backbone = backbone
        self.head = head
        self.options = options
        self.cache = cache
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.selection: dict[str, dict] = {}  # backbone -> validation scores, when several were tried
        self.train_samples: Sequence[Sample] = ()
        self.val_samples: Sequence[Sample] = ()
        self.fine_tune: dict = {}  # --fine-tune: depths tried, chosen K, head-only vs fine-tuned (see tasks.finetune)
        self.head_only: Classifier | None = None  # the model before fine-tuning, when it ran
        self.int8_head_choice: dict[str, dict] = {}  # runtime -> validation accuracy of the two int8 heads
        # fp32 files written in this process -> the head they hold: a second format that needs the same
        # float source (fp32 then int8, dynamic, ...) reuses it instead of converting again.
        self.float_sources: dict[Path, SoftmaxHead] = {}

    def fresh_float_source(self, path: Path, head: SoftmaxHead) -> bool:
        """True when `path` already holds this process's float model with `head`."""
        return self.float_sources.get(path) is head and path.is_file()

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.head.classes_]

    @property
    def spec(self):
        return self.backbone.spec

    @staticmethod
    def open_cache(options: ClassifierOptions) -> FeatureCache:
        return FeatureCache(options.cache_dir / "features.sqlite" if options.cache_dir else None)

    @classmethod
    def candidate_backbones(cls, options: ClassifierOptions) -> list[str]:
        if options.model.backbone:
            spec = get_spec(options.model.backbone)
            if spec.modality != cls.modality:
                raise EdgemakerError(f"backbone {spec.name!r} is for {spec.modality}, not {cls.modality}; "
                                     "see `edgemaker backbones`")
            return [spec.name]
        return [DEFAULT_IMAGE_BACKBONE] if cls.modality == "image" else list(DEFAULT_AUDIO_BACKBONES)

    def _embed(self, samples: Sequence[Sample], views: int, desc: str) -> Embeddings:
        return _embed(self.backbone, samples, views, self.options, self.cache, self.progress, desc)

    @classmethod
    def create(
        cls,
        train: Sequence[Sample],
        validation: Sequence[Sample],
        options: ClassifierOptions | None = None,
        progress: Progress | None = None,
        cache: FeatureCache | None = None,
    ) -> Classifier:
        """Embed `train` (with augmented views) and `validation`, fit a head per candidate backbone,
        keep the one with the best validation accuracy (ties: lower validation loss)."""
        options = options or ClassifierOptions()
        progress = progress or SilentProgress()
        cache = cache or cls.open_cache(options)
        extract_s = train_s = 0.0
        best: tuple | None = None
        scores: dict[str, dict] = {}
        if options.fine_tune.active:  # fail before any extraction when the backbone or K cannot be fine-tuned
            from .finetune import check_supported

            for name in cls.candidate_backbones(options):
                spec = get_spec(name)
                check_supported(spec.with_image_size(options.model.input_size)
                                if options.model.input_size and spec.image else spec,
                                [k for k in options.fine_tune.depths if k > 0])
        for name in cls.candidate_backbones(options):
            t0 = time.perf_counter()
            spec = get_spec(name)
            if options.model.input_size and spec.image is not None:
                spec = spec.with_image_size(options.model.input_size)
            backbone = Backbone(spec, options.threads, options.cache_dir)
            x_train = _embed(backbone, train, options.augmentation.active_views, options, cache, progress,
                             f"extract train ({name})")
            x_val = _embed(backbone, validation, 0, options, cache, progress, f"extract val ({name})")
            t1 = time.perf_counter()
            head = _head(options).fit(x_train.vectors, _labels(train, x_train),
                                      validation=(x_val.vectors, _labels(validation, x_val)) if len(validation) else None,
                                      callback=lambda record, name=name: progress.epoch(name, record))
            model = cls(backbone, head, options, cache, progress)
            t2 = time.perf_counter()
            extract_s += t1 - t0
            train_s += t2 - t1
            if len(validation):
                ev = model._evaluate_embeddings(validation, x_val)
                scores[name] = {"val_accuracy": round(ev.accuracy, 4), "val_loss": round(ev.loss, 4)}
                rank = (ev.accuracy, -ev.loss)
            else:
                rank = (0.0, 0.0)
            if best is None or rank > best[0]:
                best = (rank, model)
        assert best is not None
        model = best[1]
        model.timings = {"extract_s": extract_s, "train_s": train_s}
        model.train_samples, model.val_samples = list(train), list(validation)
        model.selection = scores if len(scores) > 1 else {}
        if options.fine_tune.active:
            from .finetune import fine_tune

            model = fine_tune(model, progress)
        return model

    def embed(self, samples: Sequence[Sample], desc: str = "extract") -> Embeddings:
        return self._embed(samples, 0, desc)

    def _evaluate_embeddings(self, samples: Sequence[Sample], emb: Embeddings) -> Evaluation:
        proba = emb.aggregate(self.head.predict_proba(emb.vectors))
        return evaluate_predictions(self.classes, [s.label for s in samples], proba)

    def evaluate(self, data: Sequence[Sample]) -> Evaluation:
        """The in-memory float model on `data`; a sample's result is the mean over its windows."""
        return self._evaluate_embeddings(data, self.embed(data, "extract test"))

    def metadata(self, quantization: str = "none", frontend: bool = True) -> dict:
        return onnx_model.model_metadata(self.spec, self.classes, quantization, self.options, frontend)

    def export(self, out_dir: str | Path, quantization: Quantization | None = None, frontend: bool = True,
               int8_aware_head: bool = True) -> Path:
        """Write the stitched model (fp32, or quantized from it) into `out_dir`; returns its path.

        Audio models take raw audio windows and compute log-mel in the graph; `frontend=False` gives
        the variant that takes the log-mel patch (for devices with a DSP front end). For int8, a second
        file whose head is fitted on the int8 backbone's own embeddings is built too, and the one with
        the better validation accuracy is kept (unless `int8_aware_head` is False).
        """
        quantization = quantization or Quantization.none()
        out_dir = Path(out_dir)
        suffix = "" if frontend else "_nofrontend"
        fp32 = out_dir / f"{EXPORT_NAMES['none']}{suffix}.onnx"
        graph = self.backbone.onnx_path if frontend else export_backbone_onnx(self.spec, self.options.cache_dir, False)
        if not self.fresh_float_source(fp32, self.head):
            model = onnx_model.stitch(graph, self.head.coef_, self.head.intercept_, self.metadata("none", frontend))
            onnx_model.save_model(model, fp32)
            self.float_sources[fp32] = self.head
        if quantization.kind == "none":
            return fp32
        target = out_dir / f"{EXPORT_NAMES[quantization.kind]}{suffix}.onnx"
        meta = self.metadata(quantization.kind, frontend)
        onnx_model.quantize(fp32, target, quantization, {**meta, "head": "float head, quantized"})
        if quantization.kind == "int8" and int8_aware_head and self.train_samples and self.val_samples:
            self._try_int8_head(graph, target, quantization, frontend, meta)
        return target

    def _try_int8_head(self, graph: Path, target: Path, quantization: Quantization, frontend: bool, meta: dict) -> None:
        """Build the int8 file again with a head fitted on the int8 backbone's embeddings, and keep
        whichever of the two int8 files scores better on the validation split (ties: the plain one)."""
        from ..export.int8_head import keep_better_on_validation

        head = self._int8_head(graph, target.parent, quantization, frontend)
        source = target.with_name(f".{target.stem}-int8-head-source.onnx")
        aware = target.with_name(f".{target.stem}-int8-head.onnx")
        try:
            onnx_model.save_model(onnx_model.stitch(graph, head.coef_, head.intercept_, meta), source)
            onnx_model.quantize(source, aware, quantization, {**meta, "head": "fitted on the int8 backbone's embeddings"})
            keep_better_on_validation(self, target, aware, "onnx")
        finally:
            source.unlink(missing_ok=True)
            aware.unlink(missing_ok=True)

    def _int8_head(self, graph: Path, out_dir: Path, quantization: Quantization, frontend: bool) -> SoftmaxHead:
        """Quantize the backbone graph alone and fit a head on its embeddings (see export.int8_head)."""
        from ..export.int8_head import OnnxBackbone, calibration_digest, fit_int8_head

        digest = calibration_digest(quantization, frontend, "onnx")
        backbone_int8 = out_dir / f".backbone_int8-{digest}.onnx"
        meta = self.metadata("int8", frontend)
        try:
            onnx_model.quantize(graph, backbone_int8, quantization, meta)
            return fit_int8_head(self, OnnxBackbone(backbone_int8, meta, self.options.threads), digest)
        finally:
            backbone_int8.unlink(missing_ok=True)


def fit_head(backbone, train: Sequence[Sample], validation: Sequence[Sample], options: ClassifierOptions,
             cache, progress, tag: str) -> SoftmaxHead:
    """A head fitted on `backbone`'s embeddings (any object with `spec` and `embed`), as in create()."""
    x_train = _embed(backbone, train, options.augmentation.active_views, options, cache, progress, f"extract train ({tag})")
    x_val = _embed(backbone, validation, 0, options, cache, progress, f"extract val ({tag})")
    return _head(options).fit(x_train.vectors, _labels(train, x_train),
                              validation=(x_val.vectors, _labels(validation, x_val)) if len(validation) else None)


def _embed(backbone: Backbone, samples, views: int, options: ClassifierOptions, cache, progress, desc) -> Embeddings:
    aug = options.augmentation
    augmentation = aug.augmentation() if backbone.spec.image else aug.audio_augmentation()
    return extract_embeddings(samples, backbone, cache, views, augmentation if views else None, progress,
                              desc=desc, silence=options.silence)


class ImageClassifier(Classifier):
    modality: Modality = "image"


class AudioClassifier(Classifier):
    modality: Modality = "audio"


def classifier_for(modality: Modality) -> type[Classifier]:
    return ImageClassifier if modality == "image" else AudioClassifier
