"""ImageClassifier: embeddings from a frozen backbone (cached), a trained softmax head, exports."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backbones import get_spec
from ..backbones.runtime import Backbone
from ..data.validate import Sample
from ..evaluate.metrics import Evaluation, evaluate_predictions
from ..export import onnx_model
from ..export.quantization import Quantization
from ..features.cache import FeatureCache
from ..features.extract import extract_embeddings
from ..heads.softmax import SoftmaxHead
from ..progress import Progress, SilentProgress
from .options import ImageClassifierOptions

EXPORT_NAMES = {"none": "model_fp32.onnx", "int8": "model_int8.onnx", "dynamic": "model_dynamic.onnx",
                "float16": "model_fp16.onnx"}


class ImageClassifier:
    def __init__(self, backbone: Backbone, head: SoftmaxHead, options: ImageClassifierOptions,
                 cache: FeatureCache | None, progress: Progress) -> None:
        self.backbone = backbone
        self.head = head
        self.options = options
        self.cache = cache
        self.progress = progress
        self.timings: dict[str, float] = {}

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.head.classes_]

    @property
    def spec(self):
        return self.backbone.spec

    @staticmethod
    def open_cache(options: ImageClassifierOptions) -> FeatureCache:
        return FeatureCache(options.cache_dir / "features.sqlite" if options.cache_dir else None)

    @classmethod
    def create(
        cls,
        train: Sequence[Sample],
        validation: Sequence[Sample],
        options: ImageClassifierOptions | None = None,
        progress: Progress | None = None,
        cache: FeatureCache | None = None,
    ) -> ImageClassifier:
        """Embed `train` (with augmented views) and `validation`, then fit the head on them."""
        options = options or ImageClassifierOptions()
        progress = progress or SilentProgress()
        cache = cache or cls.open_cache(options)
        spec = get_spec(options.model.backbone)
        t0 = time.perf_counter()
        backbone = Backbone(spec, options.threads, options.cache_dir)
        aug = options.augmentation
        x_train = extract_embeddings(train, backbone, cache, aug.active_views, aug.augmentation(), progress,
                                     desc="extract train")
        x_val = extract_embeddings(validation, backbone, cache, 0, None, progress, desc="extract val")[:, 0]
        t1 = time.perf_counter()
        hp = options.hparams
        head = SoftmaxHead(
            epochs=hp.epochs, batch_size=hp.batch_size, learning_rate=hp.learning_rate, dropout=hp.dropout,
            label_smoothing=hp.label_smoothing, weight_decay=hp.weight_decay, class_weight=hp.class_weights,
            patience=hp.patience, random_state=hp.seed,
        )
        head.fit(x_train, [s.label for s in train],
                 validation=(x_val, [s.label for s in validation]) if len(validation) else None)
        model = cls(backbone, head, options, cache, progress)
        model.timings = {"extract_s": t1 - t0, "train_s": time.perf_counter() - t1}
        return model

    def embed(self, samples: Sequence[Sample], desc: str = "extract") -> np.ndarray:
        return extract_embeddings(samples, self.backbone, self.cache, 0, None, self.progress, desc=desc)[:, 0]

    def evaluate(self, data: Sequence[Sample]) -> Evaluation:
        """The in-memory float model (backbone fp32 + head) on `data`."""
        proba = self.head.predict_proba(self.embed(data, "extract test"))
        return evaluate_predictions(self.classes, [s.label for s in data], proba)

    def metadata(self, quantization: str = "none") -> dict:
        return onnx_model.model_metadata(self.spec, self.classes, quantization)

    def export(self, out_dir: str | Path, quantization: Quantization | None = None) -> Path:
        """Write the stitched model (fp32, or quantized from it) into `out_dir`; returns its path."""
        quantization = quantization or Quantization.none()
        out_dir = Path(out_dir)
        fp32 = out_dir / EXPORT_NAMES["none"]
        model = onnx_model.stitch(self.backbone.onnx_path, self.head.coef_, self.head.intercept_, self.metadata())
        onnx_model.save_model(model, fp32)
        if quantization.kind == "none":
            return fp32
        return onnx_model.quantize(fp32, out_dir / EXPORT_NAMES[quantization.kind], quantization, self.spec,
                                   self.metadata(quantization.kind))
