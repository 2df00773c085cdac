"""Options as small nested dataclasses: each group validates itself and has sensible defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.audio import AudioAugmentation, SilenceOptions
from ..data.images import Augmentation


@dataclass(frozen=True)
class ModelOptions:
    backbone: str | None = None  # None: the task's default (audio: chosen per dataset by validation)
    input_size: int | None = None  # images: the backbone rebuilt for this input size (smaller devices)

    def __post_init__(self) -> None:
        if self.input_size is not None and not 32 <= self.input_size <= 512:
            raise ValueError("input_size must be within 32..512")


@dataclass(frozen=True)
class AugmentationOptions:
    """Training-time augmentation. Images: flip, rotation, zoom (the seed's). Sounds: gain,
    background noise at a random SNR, time shift. Off for evaluation."""

    enabled: bool = True
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

    @property
    def active_views(self) -> int:
        return self.views if self.enabled else 0


@dataclass(frozen=True)
class HParams:
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.2
    label_smoothing: float = 0.1
    weight_decay: float = 1e-4
    class_weights: str | None = "auto"  # "auto": balanced weights when classes are imbalanced
    patience: int = 15  # early stopping on validation accuracy, best epoch restored
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("dropout and label_smoothing must be within [0, 1)")
        if self.class_weights not in (None, "auto", "balanced"):
            raise ValueError("class_weights must be auto, balanced or none")


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

    def __post_init__(self) -> None:
        if self.depth is not None and self.depth != "auto" and not (isinstance(self.depth, int) and self.depth >= 0):
            raise ValueError("fine-tune depth must be a number of blocks (0, 1, 2, ...) or 'auto'")
        if not self.candidates or min(self.candidates) < 0:
            raise ValueError("fine-tune candidates must be non-negative block counts")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("fine-tune epochs, patience and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("fine-tune learning_rate must be positive")

    @property
    def active(self) -> bool:
        return self.depth == "auto" or bool(self.depth)

    @property
    def depths(self) -> list[int]:
        """Block counts to try, smallest first (0 = the head-only model)."""
        return sorted(set(self.candidates) | {0}) if self.depth == "auto" else [0, int(self.depth or 0)]


@dataclass(frozen=True)
class ClassifierOptions:
    model: ModelOptions = field(default_factory=ModelOptions)
    hparams: HParams = field(default_factory=HParams)
    augmentation: AugmentationOptions = field(default_factory=AugmentationOptions)
    silence: SilenceOptions = field(default_factory=SilenceOptions)  # audio only
    fine_tune: FineTuneOptions = field(default_factory=FineTuneOptions)
    cache_dir: Path | None = None  # default: the user cache directory
    threads: int | None = None  # ONNX Runtime threads; default: all cores

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        return d


# The image task's name for the same options (MediaPipe Model Maker style).
ImageClassifierOptions = ClassifierOptions
AudioClassifierOptions = ClassifierOptions
