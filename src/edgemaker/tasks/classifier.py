"""Classifiers on a frozen backbone: cached window embeddings, a trained softmax head, exports.

One implementation for both modalities; an image is a sample with one window, a sound clip a
sample with many, and sample-level results are the mean of its windows' probabilities.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..backbones import DEFAULT_AUDIO_BACKBONES, DEFAULT_IMAGE_BACKBONE, get_spec
from ..backbones.mobilenet_v1 import gray_twin
from ..backbones.runtime import Backbone
from ..backbones.spec import BackboneSpec, Modality
from ..data.validate import Sample
from ..errors import EdgemakerError
from ..evaluate.metrics import Evaluation, evaluate_predictions
from ..export.base import FloatModel
from ..export.int8 import Validation
from ..export.quantization import Quantization
from ..export.session import ExportSession
from ..features.cache import FeatureCache
from ..features.extract import Embeddings, extract_embeddings
from ..features.flip import FlippedBackbone
from ..heads.cv import CVSelection, merge, one_standard_error
from ..heads.selection import DEFAULTS, STAGES, HeadSelection, SelectionMemo, select_head
from ..heads.softmax import SoftmaxHead
from ..progress import Progress, SilentProgress
from .head_choice import (SEARCH_VERSION, cv_select_head, head_for, passes_per_epoch, refit_chosen,
                          resolved_hparams)
from .options import ClassifierOptions, augmentation_for


def make_head(options: ClassifierOptions, settings: dict | None = None, passes: int = 1):
    """The head for `options`; `settings` (from head selection) fill what the options leave open;
    `passes`: how often an epoch passes over each training sample (head_choice.passes_per_epoch)."""
    return head_for(options, settings, passes=passes)


def choose_head(options: ClassifierOptions, train: Sequence[Sample], validation: Sequence[Sample],
                x_train: Embeddings, x_val: Embeddings, mirrored: tuple | None = None
                 ) -> tuple[SoftmaxHead, HeadSelection | CVSelection]:
    """Head and settings chosen by cross-validation (tasks/head_choice.py), or on the validation split
    (heads/selection.py) when cv_folds < 2 or the data is too small for 2 folds; what the user set is kept."""
    given = {**options.augmentation.given(), **options.hparams.given()}
    by_cv = None
    if options.hparams.folds_for(len(train) + len(validation)) >= 2:
        by_cv = cv_select_head(options, train, validation, x_train, x_val, given, mirrored)
    if by_cv is not None:
        return by_cv
    if not len(validation):  # nothing to choose on: the defaults
        given = {**DEFAULTS, **given}
    y_val = label_indices(validation, x_val) if len(validation) else None

    def fit(settings: dict) -> SoftmaxHead:
        rows = x_train if settings["views"] == "augmented" else x_train.clean()
        return make_head(options, settings, passes_per_epoch(options, settings["views"])).fit(
            rows.vectors, label_indices(train, rows), validation=(x_val.vectors, y_val) if len(validation) else None)

    def score(head: SoftmaxHead) -> tuple[float, float]:
        if not len(validation):
            return 0.0, 0.0
        ev = evaluate_predictions([str(c) for c in head.classes_], [s.label for s in validation],
                                  x_val.aggregate(head.predict_proba(x_val.vectors)))
        return ev.accuracy, ev.loss

    return select_head(fit, score, given, memo=(_selection_memo(options), _selection_key(
        options, given, (x_train, label_indices(train, x_train)), (x_val, y_val))))


def _selection_memo(options: ClassifierOptions) -> SelectionMemo:
    from ..paths import cache_dir

    return SelectionMemo((options.cache_dir or cache_dir()) / "head-selection")


def _selection_key(options: ClassifierOptions, given: dict, *parts: tuple[Embeddings, np.ndarray | None]) -> str:
    """Digest of every input of the head search: embeddings (rows, owners, views), labels, the head
    options (seed, epochs, ...), the given settings, the grid and the head's code version."""
    h = hashlib.sha256(repr((SoftmaxHead.VERSION, SEARCH_VERSION, STAGES, sorted(given.items()),
                             options.hparams)).encode())
    for emb, labels in parts:
        for a in (emb.vectors, emb.owner, emb.view, labels if labels is not None else np.zeros(0)):
            h.update(str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def resolved_options(options: ClassifierOptions, chosen: dict) -> ClassifierOptions:
    """`options` with the selected head settings written in, so later fits (the int8 head) reuse them."""
    hp = replace(resolved_hparams(options, chosen), weight_decay=chosen.get("weight_decay", DEFAULTS["weight_decay"]),
                 label_smoothing=chosen.get("label_smoothing", DEFAULTS["label_smoothing"]))
    aug = replace(options.augmentation, enabled=chosen["views"] == "augmented" and options.augmentation.views > 0)
    return replace(options, hparams=hp, augmentation=aug)


def label_indices(samples: Sequence[Sample], emb: Embeddings) -> np.ndarray:
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
        self._sessions: dict[Path, ExportSession] = {}  # out_dir -> the session that exports there
        self.network: dict = {}  # how a trained-per-run backbone was trained (small_cnn, --base-model)
        self.head_selection: HeadSelection | None = None  # head settings tried on validation, and the winner
        self.fine_tune: dict = {}  # --fine-tune: depths tried, chosen K, head-only vs fine-tuned (see tasks.finetune)
        self.head_only: Classifier | None = None  # the model before fine-tuning, when it ran
        self.flip_average = False  # images: each image's and its mirror's probabilities averaged (CV-chosen)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.head.classes_]

    @property
    def spec(self):
        return self.backbone.spec

    @property
    def out_of_fold(self) -> tuple[list[Sample], np.ndarray, list[str]] | None:
        """(train + val samples, the chosen head's out-of-fold probabilities for each, their column
        labels) when cross-validation chose the head, else None: what finding label errors needs."""
        sel = self.head_selection
        if not isinstance(sel, CVSelection):
            return None
        return [*self.train_samples, *self.val_samples], sel.oof_probabilities, list(sel.classes)

    @property
    def trained_on_val(self) -> bool:
        """Whether the shipped model learnt from validation too (its head refitted on train + val): scores
        on validation are then training scores, and the int8 checks go through a head fitted on train only."""
        return bool(getattr(self.head_selection, "refit_on_val", False))

    @staticmethod
    def open_cache(options: ClassifierOptions) -> FeatureCache:
        return FeatureCache(options.cache_dir / "features.sqlite" if options.cache_dir else None)

    @classmethod
    def candidate_backbones(cls, options: ClassifierOptions) -> list[str]:
        if options.model.base_model:
            if cls.modality != "image":
                raise EdgemakerError("--base-model works on images only for now; train sounds without it")
            return ["base_model"]
        if options.model.backbone:
            name = scratch_network(options.model.backbone, cls.modality)
            spec = get_spec(gray_twin(name) if options.model.grayscale == "on" else name)
            if spec.modality != cls.modality:
                raise EdgemakerError(f"backbone {spec.name!r} is for {spec.modality}, not {cls.modality}; "
                                     "see `edgemaker backbones`")
            return [spec.name]
        return [DEFAULT_IMAGE_BACKBONE] if cls.modality == "image" else list(DEFAULT_AUDIO_BACKBONES)

    def _embed(self, samples: Sequence[Sample], views: int, desc: str) -> Embeddings:
        return embed_samples(self.backbone, samples, views, self.options, self.cache, self.progress, desc)

    @classmethod
    def create(
        cls,
        train: Sequence[Sample],
        validation: Sequence[Sample],
        options: ClassifierOptions | None = None,
        progress: Progress | None = None,
        cache: FeatureCache | None = None,
        specs: Sequence[BackboneSpec] | None = None,
    ) -> Classifier:
        """Embed `train` (with augmented views) and `validation`, fit a head per candidate backbone,
        keep the one with the best validation accuracy (ties: lower validation loss).

        `specs`: the candidates as specs instead of the options' names, e.g. a network already
        trained (experiments reuse a small_cnn trained once per data and seed)."""
        options = options or ClassifierOptions()
        progress = progress or SilentProgress()
        cache = cache or cls.open_cache(options)
        extract_s = train_s = 0.0
        best: tuple | None = None
        scores: dict[str, dict] = {}
        tunable: tuple | None = None  # the best candidate fine-tuning supports, when it runs
        by_cv: list[tuple] = []  # (fold mean, standard error, simplicity key, model) per backbone
        if options.fine_tune.active:  # fail before any extraction when no backbone or K can be fine-tuned
            from .finetune import check_candidates, supported

            check_candidates([spec.with_image_size(options.model.input_size)
                              if options.model.input_size and spec.image else spec
                              for spec in map(get_spec, cls.candidate_backbones(options))],
                             [k for k in options.fine_tune.depths if k > 0])
        for given in specs or cls.candidate_backbones(options):
            t0 = time.perf_counter()
            spec = given if isinstance(given, BackboneSpec) else get_spec(given)
            name = spec.name
            network: dict = {}
            if spec.weights.kind == "trained":  # its weights are trained on this data first
                spec, network = train_backbone(spec, train, validation, options, progress)
            elif options.model.input_size and spec.image is not None:
                spec = spec.with_image_size(options.model.input_size)
            backbone = Backbone(spec, options.threads, options.cache_dir)
            x_train = embed_samples(backbone, train, options.augmentation.active_views, options, cache, progress,
                             f"extract train ({name})")
            x_val = embed_samples(backbone, validation, 0, options, cache, progress, f"extract val ({name})")
            mirrored = None
            if (options.hparams.flip_average != "off" and spec.image is not None
                    and options.hparams.folds_for(len(train) + len(validation)) >= 2):
                mirror = FlippedBackbone(backbone)
                mirrored = tuple(embed_samples(mirror, s, 0, options, cache, progress, f"extract {what} mirrored ({name})")
                                 for s, what in ((train, "train"), (validation, "val")))
            t1 = time.perf_counter()
            head, head_selection = choose_head(options, train, validation, x_train, x_val, mirrored)
            for record in head.history_:  # the winner's epochs, for live charts
                progress.epoch(name, record)
            model = cls(backbone, head, resolved_options(options, head_selection.chosen), cache, progress)
            model.head_selection = head_selection
            model.flip_average = bool(head_selection.chosen.get("flip_average"))
            model.network = network
            t2 = time.perf_counter()
            network_s = network.get("train_s", 0.0)  # training a trained-per-run backbone counts as training
            extract_s += t1 - t0 - network_s
            train_s += t2 - t1 + network_s
            if isinstance(head_selection, CVSelection):  # the chosen head's fold mean (val is not held out)
                cv = head_selection.chosen_result
                scores[name] = {"cv_mean": round(cv.mean, 4), "cv_std": round(cv.std, 4), "cv_folds": len(cv.accuracies)}
                rank = (cv.mean, -float(np.mean(cv.losses)))
                by_cv.append((cv.mean, cv.stderr, (spec.parameters or 0,), model))
            elif len(validation):
                ev = model._evaluate_embeddings(validation, x_val)
                scores[name] = {"val_accuracy": round(ev.accuracy, 4), "val_loss": round(ev.loss, 4)}
                rank = (ev.accuracy, -ev.loss)
            else:
                rank = (0.0, 0.0)
            if best is None or rank > best[0]:
                best = (rank, model)
            if options.fine_tune.active and supported(spec) and (tunable is None or rank > tunable[0]):
                tunable = (rank, model)
        assert best is not None
        model = best[1]
        if len(by_cv) > 1 and len(by_cv) == len(scores):  # backbones too: one standard error, fewer parameters first
            model = by_cv[one_standard_error(*[[c[i] for c in by_cv] for i in range(3)])][3]
        for m in (model, tunable[1]) if tunable else (model,):
            m.timings = {"extract_s": extract_s, "train_s": train_s}
            m.train_samples, m.val_samples = list(train), list(validation)
            m.selection = scores if len(scores) > 1 else {}
        progress.log(model.head_selection.summary())
        if tunable is not None:  # the head-only winner stays the model to beat, fine-tunable or not
            from .finetune_paired import fine_tune_auto

            model = fine_tune_auto(tunable[1], progress, baseline=model)
        return model

    def embed(self, samples: Sequence[Sample], desc: str = "extract") -> Embeddings:
        return self._embed(samples, 0, desc)

    def _evaluate_embeddings(self, samples: Sequence[Sample], emb: Embeddings) -> Evaluation:
        proba = emb.aggregate(self.head.predict_proba(emb.vectors))
        return evaluate_predictions(self.classes, [s.label for s in samples], proba)

    def evaluate(self, data: Sequence[Sample]) -> Evaluation:
        """The in-memory float model on `data`; a sample's result is the mean over its windows (and,
        with flip averaging, over the image and its mirror)."""
        emb = self.embed(data, "extract test")
        if not self.flip_average:
            return self._evaluate_embeddings(data, emb)
        mirror = self._embed_with(FlippedBackbone(self.backbone), data, "extract test mirrored")
        proba = (self.head.predict_proba(emb.vectors) + self.head.predict_proba(mirror.vectors)) / 2
        return evaluate_predictions(self.classes, [s.label for s in data], emb.aggregate(proba))

    def _embed_with(self, backbone, samples: Sequence[Sample], desc: str) -> Embeddings:
        return embed_samples(backbone, samples, 0, self.options, self.cache, self.progress, desc)

    def float_model(self) -> FloatModel:
        """What export needs of this classifier: backbone spec, linear head, labels."""
        silence = self.options.silence
        return FloatModel(self.spec, self.head.coef_, self.head.intercept_, tuple(self.classes),
                          silence.threshold_db if self.modality == "audio" and silence.enabled else None,
                          self.options.cache_dir, self.flip_average)

    def metadata(self, quantization: str = "none", frontend: bool = True) -> dict:
        return self.float_model().metadata(quantization, frontend)

    def export_session(self, out_dir: str | Path) -> ExportSession:
        """The session that writes this classifier's files into `out_dir` (float sources converted
        once, inputs decoded once). Int8 files are checked on the validation split, and an int8-aware
        head is fitted on the training split when the plain int8 file loses accuracy there."""
        out_dir = Path(out_dir)
        session = self._sessions.get(out_dir)
        if session is None or session.model.coef is not self.head.coef_:
            validation = None
            if self.val_samples:
                validation = Validation([s.path for s in self.val_samples], [s.label for s in self.val_samples],
                                        self.evaluate(self.val_samples).probabilities, self._int8_check_head())
            session = ExportSession(self.float_model(), out_dir, validation,
                                    self._fit_int8_head if self.train_samples else None, self.options.threads)
            self._sessions[out_dir] = session
        return session

    def export(self, out_dir: str | Path, quantization: Quantization | None = None, frontend: bool = True,
               runtime: str = "onnx", int8_aware_head: bool = True) -> Path:
        """Write the stitched model for `runtime` ("onnx" or "tflite"), fp32 or quantized, into `out_dir`.

        Audio models take raw audio windows and compute log-mel in the graph; `frontend=False` gives
        the variant that takes the log-mel patch (for devices with a DSP front end).
        """
        return self.export_session(out_dir).export(runtime, quantization, frontend, int8_aware_head)

    def refit_head_on_val(self) -> bool:
        """Fit the cross-validated head again on train + val, as `edgemaker train` ships a head-only model,
        where it was fitted on train to keep validation for a comparison that is over (a declined
        --fine-tune). -> whether it was refitted."""
        sel = self.head_selection
        if not (isinstance(sel, CVSelection) and self.train_samples and self.val_samples) or sel.refit_on_val:
            return False
        views = self.options.augmentation.active_views if sel.chosen.get("views") == "augmented" else 0
        emb = merge(self._embed(self.train_samples, views, "extract train"), self.embed(self.val_samples, "extract val"))
        self.head = refit_chosen(self.options, sel, [*self.train_samples, *self.val_samples], emb, True)
        return True

    def _int8_check_head(self) -> tuple | None:
        """When the model was trained on validation too (trained_on_val), the int8 checks cannot judge on
        validation through its head: (the same head fitted on train only, its float probabilities on
        validation) (the chosen settings and epoch count, no early stopping), without flip averaging (int8
        backbones embed the unmirrored image). None when validation is held out from the model."""
        sel = self.head_selection
        if not (isinstance(sel, CVSelection) and self.trained_on_val
                and self.train_samples and self.val_samples):
            return None
        chosen = {k: v for k, v in sel.chosen.items() if k != "flip_average"}
        views = self.options.augmentation.active_views if chosen.get("views") == "augmented" else 0
        rows = self._embed(self.train_samples, views, "extract train (int8 check head)")
        rows = rows if views else rows.clean()
        head = head_for(self.options, chosen, sel.epochs).fit(rows.vectors, label_indices(self.train_samples, rows))
        if [str(c) for c in head.classes_] != self.classes:
            return None  # a class missing from train: no comparable head
        val = self.embed(self.val_samples, "extract val (int8 check head)")
        return head, val.aggregate(head.predict_proba(val.vectors))

    def _fit_int8_head(self, int8_backbone, digest: str) -> SoftmaxHead:
        """A head fitted, as in create(), on the embeddings of the int8 backbone inside an int8 file;
        cached under its own backbone name (an int8 backbone is another backbone)."""
        spec = dataclasses.replace(self.spec, name=f"{self.spec.name}-int8-{digest}")

        class Named:
            def __init__(self) -> None:
                self.spec = spec

            def embed(self, batch: np.ndarray) -> np.ndarray:
                return int8_backbone.embed(batch)

        return fit_head(Named(), self.train_samples, self.val_samples, self.options, self.cache, self.progress,
                        "int8 backbone")


def train_backbone(spec, train: Sequence[Sample], validation: Sequence[Sample], options: ClassifierOptions,
                   progress) -> tuple:
    """A backbone whose weights are made by the run: (the trained spec with file weights, a summary)."""
    if spec.name == "base_model":
        from .transfer import train_from_base

        return train_from_base(spec, train, validation, options, progress)
    if spec.name == "small_cnn":
        from .scratch import train_small_cnn

        return train_small_cnn(spec, train, validation, options, progress)
    if spec.name == "small_cnn_mel":
        from .scratch_audio import train_small_cnn_mel

        return train_small_cnn_mel(spec, train, validation, options, progress)
    raise EdgemakerError(f"backbone {spec.name!r} has no trainer for its 'trained' weights")


def scratch_network(name: str, modality: str) -> str:
    """`small_cnn` names the from-scratch network of either modality: small_cnn_mel for sounds."""
    return "small_cnn_mel" if name == "small_cnn" and modality == "audio" else name


def fit_head(backbone, train: Sequence[Sample], validation: Sequence[Sample], options: ClassifierOptions,
             cache, progress, tag: str) -> SoftmaxHead:
    """A head fitted on `backbone`'s embeddings (any object with `spec` and `embed`), as in create()."""
    x_train = embed_samples(backbone, train, options.augmentation.active_views, options, cache, progress, f"extract train ({tag})")
    x_val = embed_samples(backbone, validation, 0, options, cache, progress, f"extract val ({tag})")
    return make_head(options, passes=passes_per_epoch(options, "augmented")).fit(
        x_train.vectors, label_indices(train, x_train),
        validation=(x_val.vectors, label_indices(validation, x_val)) if len(validation) else None)


def embed_samples(backbone: Backbone, samples, views: int, options: ClassifierOptions, cache, progress, desc) -> Embeddings:
    augmentation = augmentation_for(backbone.spec, options)
    engine = None
    if options.engine.kind != "local" and isinstance(backbone, Backbone):  # a graph that can be shipped
        from ..features.engines import engine_for

        engine = engine_for(options.engine)
    return extract_embeddings(samples, backbone, cache, views, augmentation if views else None, progress,
                              desc=desc, silence=options.silence, engine=engine)


class ImageClassifier(Classifier):
    modality: Modality = "image"


class AudioClassifier(Classifier):
    modality: Modality = "audio"


def classifier_for(modality: Modality) -> type[Classifier]:
    return ImageClassifier if modality == "image" else AudioClassifier
