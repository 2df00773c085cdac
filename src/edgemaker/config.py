"""One run request: a frozen RunConfig of small option groups, written to config.json and read back.

Every group is a dataclass; `to_dict`/`from_dict` walk the dataclass fields, so a field added to any
group (here, in tasks/options.py or data/splits.py) is saved and restored with no extra code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from .data.splits import SplitOptions
from .errors import EdgemakerError
from .serial import from_dict, to_dict
from .export.stage import DEFAULT_FORMATS
from .tasks.options import AutoOptions, ClassifierOptions

CONFIG_VERSION = 1


@dataclass(frozen=True)
class DataOptions:
    folder: str = ""  # a local folder or an fsspec URL
    task: str | None = None  # "image" or "audio"; None: detected from the files

    def __post_init__(self) -> None:
        if self.task not in (None, "image", "audio"):
            raise ValueError("task must be image or audio")


@dataclass(frozen=True)
class BudgetOptions:
    """Device budgets in bytes: targets of the budget search without a fixed backbone, else checks."""

    max_flash: int | None = None
    max_ram: int | None = None

    def __post_init__(self) -> None:
        if any(v is not None and v <= 0 for v in (self.max_flash, self.max_ram)):
            raise ValueError("budgets must be positive byte counts")

    @property
    def given(self) -> bool:
        return self.max_flash is not None or self.max_ram is not None


@dataclass(frozen=True)
class SearchOptions:
    """How the model is found: one registered strategy (strategies/), then optional distillation."""

    strategy: str = "head"  # "head", "auto", "budget" or any registered name
    auto: AutoOptions | None = None  # the auto strategy's time budget
    budget: BudgetOptions = field(default_factory=BudgetOptions)
    distill: bool = False  # the strategy's model becomes the student of the full model


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...] = DEFAULT_FORMATS


@dataclass(frozen=True)
class RunConfig:
    data: DataOptions = field(default_factory=DataOptions)
    out: str = ""
    split: SplitOptions = field(default_factory=SplitOptions)
    options: ClassifierOptions = field(default_factory=ClassifierOptions)  # model, training, fine-tune, engine
    search: SearchOptions = field(default_factory=SearchOptions)
    export: ExportOptions = field(default_factory=ExportOptions)

    @classmethod
    def create(cls, data, out, options: ClassifierOptions | None = None, split: SplitOptions | None = None,
               formats=DEFAULT_FORMATS, task: str | None = None, max_flash: int | None = None,
               max_ram: int | None = None, auto: AutoOptions | None = None, distill: bool = False,
               strategy: str | None = None) -> RunConfig:
        """The request with its implied choices made: the strategy (auto when asked; the budget search
        when budgets are targets; else the plain head) and distillation's default student (small_cnn)."""
        options = options or ClassifierOptions()
        split = split or SplitOptions(seed=options.hparams.seed)
        budget = BudgetOptions(max_flash, max_ram)
        targets = budget.given and not options.model.backbone and options.model.base_model is None
        if strategy is None:
            strategy = "auto" if auto is not None else "budget" if targets else "head"
        if distill and not options.model.backbone and not targets:
            options = replace(options, model=replace(options.model, backbone="small_cnn"))
        formats = tuple(formats.split(",")) if isinstance(formats, str) else tuple(formats)
        return cls(DataOptions(str(data), task), str(out), split, options,
                   SearchOptions(strategy, auto, budget, distill), ExportOptions(formats))

    def to_dict(self) -> dict:
        return {"version": CONFIG_VERSION, **to_dict(self)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> RunConfig:
        d = {k: v for k, v in d.items() if k not in ("version", "task", "formats")}  # the flat copies for readers
        try:
            return from_dict(cls, d)
        except (TypeError, ValueError) as exc:
            raise EdgemakerError(f"{source}: {exc}; write it again with `edgemaker train ... --out RUN`") from None

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise EdgemakerError(f"{path}: cannot read the run config ({exc.strerror or exc})") from None
        except ValueError:
            raise EdgemakerError(f"{path}: not JSON; give the config.json of a run folder") from None
        if not isinstance(d, dict) or "data" not in d or "search" not in d:
            raise EdgemakerError(f"{path}: not a run config (no data/search); give the config.json of a run folder "
                                 "trained by this version, or train again")
        return cls.from_dict(d, str(path))
