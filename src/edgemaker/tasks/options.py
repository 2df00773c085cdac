"""Options as small nested dataclasses: each group validates itself and has sensible defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..data.audio import AudioAugmentation, SilenceOptions
from ..data.images import Augmentation
from ..serial import to_dict


@dataclass(frozen=True)
class ModelOptions:
    backbone: str | None = None  # None: the task's default (audio: chosen per dataset by validation)
    input_size: int | None = None  # images: the backbone rebuilt for this input size (smaller devices)
    # small_cnn (trained from scratch) and --base-model (trained from the user's model):
    width: int = 16  # small_cnn: channels of the first conv block (the last has 4x)
    # small_cnn: "auto" (one channel when every training image is gray), "on", "off"; MobileNetV1: "on"
    # gives its stem summed over RGB (one grey channel; "auto" needs nothing: on grey images both agree)
    grayscale: str = "auto"
    base_model: Path | None = None  # an ONNX or TorchScript classifier to start from
    retrain_last: int = 3  # its last N weight layers are reset and retrained; the rest stay frozen
    input_scaling: str | None = None  # a base model without edgemaker metadata: "0..1", "-1..1", "0..255", "imagenet"

    def __post_init__(self) -> None:
        low = 8 if self.backbone == "small_cnn" or self.base_model else 32
        if self.input_size is not None and not low <= self.input_size <= 512:
            raise ValueError(f"input_size must be within {low}..512")
        if not 4 <= self.width <= 128:
            raise ValueError("width must be within 4..128")
        if self.grayscale not in ("auto", "on", "off"):
            raise ValueError("grayscale must be auto, on or off")
        if self.retrain_last < 1:
            raise ValueError("retrain_last must be at least 1")
        if self.input_scaling not in (None, *INPUT_SCALINGS):
            raise ValueError(f"input_scaling must be one of {', '.join(INPUT_SCALINGS)}")
        if self.base_model is not None and self.backbone is not None:
            raise ValueError("--base-model replaces the backbone: give one or the other")


# (mean, std) per input channel such that (pixel - mean) / std is what a base model expects.
INPUT_SCALINGS = {
    "0..1": ((0.0,) * 3, (255.0,) * 3),
    "-1..1": ((127.5,) * 3, (127.5,) * 3),
    "0..255": ((0.0,) * 3, (1.0,) * 3),
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}


@dataclass(frozen=True)
class AugmentationOptions:
    """Training-time augmentation. Images: flip, rotation, zoom (what keeps a small photo set from being memorised). Sounds: gain,
    background noise at a random SNR, time shift. Off for evaluation."""

    # True: train on the augmented views; False: clean embeddings only; None: the views are embedded
    # and whether to use them is chosen on the validation split (see heads/selection.py).
    enabled: bool | None = None
    views: int = 2  # augmented copies of each training sample, embedded once and cached
    flip: bool = True
    rotation_degrees: float = 15.0
    zoom: float = 0.2
    gain_db: float = 6.0
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    max_shift_seconds: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.views <= 16:
            raise ValueError("augmentation views must be within 0..16")
        self.augmentation()  # validates the ranges
        self.audio_augmentation()

    def augmentation(self) -> Augmentation:
        return Augmentation(self.flip, self.rotation_degrees, self.zoom)

    def audio_augmentation(self) -> AudioAugmentation:
        return AudioAugmentation(self.gain_db, tuple(self.noise_snr_db), 0.5, self.max_shift_seconds)

    def given(self) -> dict:
        """The head-selection settings fixed here ({} when the use of the views is chosen)."""
        if self.enabled is None and self.views:
            return {}
        return {"views": "augmented" if self.active_views else "clean"}

    @property
    def active_views(self) -> int:
        return 0 if self.enabled is False else self.views


LARGE_FOR_CV = 1000


@dataclass(frozen=True)
class HParams:
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.2
    # None: chosen on the validation split among a few values (heads/selection.py); a value is used as given.
    label_smoothing: float | None = None
    weight_decay: float | None = None
    class_weights: str | None = "auto"  # "auto": balanced weights when classes are imbalanced
    # Early stopping on validation accuracy, best epoch restored; the softmax head counts it in passes
    # over the training samples (on a sample's clean row and 2 augmented views: 15 / 3 = 5 epochs).
    patience: int = 15
    seed: int = 0
    # The head and its settings are chosen by k-fold cross-validation over train + val (tasks/head_choice.py);
    # cv_folds None: 5, or 3 from LARGE_FOR_CV samples (a fold of 333+ samples resolves the candidates, and
    # the search costs 3/5); below 2: chosen on the validation split. cv_group_by: a regex whose first group in a file
    # name is a source id kept in one fold (e.g. '^(\d+-\d+)' for ESC-50 clips cut from one recording).
    head: str | None = None  # "softmax" (trained), "probe" (logistic regression); None: chosen
    probe_c: float | None = None  # the probe's inverse L2 strength; None: chosen
    cv_folds: int | None = None
    cv_group_by: str | None = None
    # Images: average the probabilities of each image and its mirror inside the exported graph (twice the
    # inference). "auto": only where cross-validation says it wins; it embeds every image's mirror once more.
    flip_average: str = "off"
    # The CV-chosen head refitted on train + val (True) or on train (False: validation stays held out for
    # whatever compares models on it afterwards: --auto, budget search, distillation, fine-tuning).
    refit_on_val: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be at least 1")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be within 0..{2**32 - 1} (got {self.seed})")
        if not 0 < self.learning_rate < math.inf:
            raise ValueError("learning_rate must be a positive finite number")
        if not 0 <= self.dropout < 1 or not 0 <= (self.label_smoothing or 0) < 1:
            raise ValueError("dropout and label_smoothing must be within [0, 1)")
        if self.weight_decay is not None and not 0 <= self.weight_decay < math.inf:
            raise ValueError("weight_decay must be a finite number, at least 0")
        if self.class_weights not in (None, "auto", "balanced"):
            raise ValueError("class_weights must be auto, balanced or none")
        if self.head not in (None, "softmax", "probe"):
            raise ValueError("head must be softmax, probe or auto")
        if self.flip_average not in ("off", "auto", "on"):
            raise ValueError("flip averaging must be off, auto or on")
        if self.probe_c is not None and not 0 < self.probe_c < math.inf:
            raise ValueError("the probe's C must be a positive finite number")
        if self.cv_folds is not None and not 0 <= self.cv_folds <= 20:
            raise ValueError("cv folds must be within 0..20 (below 2: choose on the validation split)")
        if self.cv_group_by is not None:
            import re

            try:
                re.compile(self.cv_group_by)
            except re.error as exc:
                raise ValueError(f"--cv-group-by {self.cv_group_by!r} is not a regular expression ({exc})") from None

    def folds_for(self, samples: int) -> int:
        """The cross-validation folds for `samples` train + val samples (see cv_folds)."""
        if self.cv_folds is not None:
            return self.cv_folds
        return 3 if samples >= LARGE_FOR_CV else 5

    def given(self) -> dict:
        """The head-selection settings fixed here (not None), by name."""
        given = {k: getattr(self, k) for k in ("weight_decay", "label_smoothing") if getattr(self, k) is not None}
        if self.head is not None:
            given["head"] = self.head
        if self.probe_c is not None:
            given["C"] = self.probe_c
        return given


@dataclass(frozen=True)
class FineTuneOptions:
    """After the head converges, train the last `depth` backbone blocks with it (BatchNorm frozen).

    depth None or 0: head only; "auto": the depth in `candidates` with the best validation accuracy.
    Epochs run on cached cut activations; the augmentation (clean or the head's views) is chosen on
    validation too."""

    depth: int | str | None = None
    candidates: tuple[int, ...] = (0, 1, 2, 3)
    epochs: int = 4
    patience: int = 2  # early stopping on validation accuracy, best state restored
    learning_rate: float = 2e-4
    batch_size: int = 32
    # auto with fewer validation samples than paired_below_val: accepted only when it beats head-only
    # across paired_folds folds of train+val (tasks/finetune_paired.py), a fixed-epoch recipe on views.
    paired_below_val: int = 200
    paired_folds: int = 3
    paired_depths: tuple[int, ...] = (3,)
    paired_epochs: int = 10
    paired_views: int = 6

    def __post_init__(self) -> None:
        if self.paired_folds < 2 or self.paired_epochs < 1 or not 0 <= self.paired_views <= 16:
            raise ValueError("fine-tune paired_folds must be at least 2, paired_epochs at least 1, views 0..16")
        if not self.paired_depths or min(self.paired_depths) < 1:
            raise ValueError("fine-tune paired_depths must be positive block counts")
        if self.depth is not None and self.depth != "auto" and not (isinstance(self.depth, int) and self.depth >= 0):
            raise ValueError("fine-tune depth must be a number of blocks (0, 1, 2, ...) or 'auto'")
        if not self.candidates or min(self.candidates) < 0:
            raise ValueError("fine-tune candidates must be non-negative block counts")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("fine-tune epochs, patience and batch_size must be at least 1")
        if not 0 < self.learning_rate < math.inf:
            raise ValueError("fine-tune learning_rate must be a positive finite number")

    @property
    def active(self) -> bool:
        return self.depth == "auto" or bool(self.depth)

    @property
    def depths(self) -> list[int]:
        """Block counts to try, smallest first (0 = the head-only model)."""
        return sorted(set(self.candidates) | {0}) if self.depth == "auto" else [0, int(self.depth or 0)]


@dataclass(frozen=True)
class EngineOptions:
    """Where validation and extraction run (features/engines.py): "local" threads, or a Ray cluster
    (`address` None: a Ray instance started for this process). Results are the same either way."""

    kind: str = "local"
    address: str | None = None
    actors: int | None = None  # ray: embedding actors; default: the cluster's CPUs // cpus_per_actor
    cpus_per_actor: int = 2  # ray: CPUs (and ONNX Runtime threads) per actor

    def __post_init__(self) -> None:
        if self.kind not in ("local", "ray"):
            raise ValueError("engine must be local or ray")
        if self.address is not None and self.kind != "ray":
            raise ValueError("--ray-address goes with --engine ray")
        if self.cpus_per_actor < 1 or (self.actors is not None and self.actors < 1):
            raise ValueError("ray actors and cpus per actor must be at least 1")


@dataclass(frozen=True)
class ClassifierOptions:
    model: ModelOptions = field(default_factory=ModelOptions)
    hparams: HParams = field(default_factory=HParams)
    augmentation: AugmentationOptions = field(default_factory=AugmentationOptions)
    silence: SilenceOptions = field(default_factory=SilenceOptions)  # audio only
    fine_tune: FineTuneOptions = field(default_factory=FineTuneOptions)
    cache_dir: Path | None = None  # default: the user cache directory
    threads: int | None = None  # ONNX Runtime threads and cross-validation fits side by side; default: all cores
    engine: EngineOptions = field(default_factory=EngineOptions)  # where validation and extraction run

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1 (got {self.threads}); leave it out to use all cores")

    def to_dict(self) -> dict:
        return to_dict(self)


def augmentation_for(spec, options: ClassifierOptions):
    """The augmentation of the training views: image or sound, from the same options."""
    aug = options.augmentation
    return aug.augmentation() if spec.image else aug.audio_augmentation()


# The image task's name for the same options (MediaPipe Model Maker style).
ImageClassifierOptions = ClassifierOptions
AudioClassifierOptions = ClassifierOptions


@dataclass(frozen=True)
class AutoOptions:
    """`--auto`: backbone, input size and head settings chosen on validation within `budget_s` seconds
    for the whole run (tasks/auto.py)."""

    budget_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise ValueError("the --auto budget must be positive, e.g. 10m")

    @staticmethod
    def parse_budget(text: str | float) -> float:
        """'10m', '90s', '1h', '300' (seconds) -> seconds."""
        import re

        m = re.fullmatch(r"\s*([0-9.]+)\s*(s|sec|m|min|h)?\s*", str(text).lower())
        if not m:
            raise ValueError(f"not a duration: {text!r} (use e.g. 10m, 90s or 1h)")
        return float(m.group(1)) * {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[m.group(2) or ""]
