"""The one translator from user settings (the CLI's flags, the web app's request) to a RunConfig.

Both front ends name settings as `edgemaker train`'s flags do (snake_case); a value left out or None
takes the library default, so the two front ends cannot drift apart.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .config import DEFAULT_FORMATS, RunConfig

SETTINGS = (
    "task", "backbone", "epochs", "batch_size", "learning_rate", "dropout", "label_smoothing", "class_weights",
    "seed", "augment", "augment_views", "split", "formats", "input_size", "width", "grayscale", "base_model",
    "retrain_last", "input_scaling", "flip", "fine_tune", "fine_tune_epochs", "max_flash", "max_ram", "device",
    "auto", "budget", "distill", "silence_db", "keep_silence", "cache_dir", "threads", "engine", "ray_address",
    "ray_actors", "strategy", "head", "cv_folds", "cv_group_by", "flip_average",
)


def config_from_settings(data, out, **settings) -> RunConfig:
    """A RunConfig from flag-named settings; ValueError on a bad value, EdgemakerError on an unknown
    backbone or format."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}")
    s = {k: v for k, v in settings.items() if v is not None}
    s.update({k: Path(s[k]) for k in ("cache_dir", "base_model") if k in s})
    config = _build(data, out, s)
    if s.get("backbone"):
        from .backbones import get_spec

        get_spec(s["backbone"])  # an unknown name is said before any work
    if s.get("strategy"):
        from .strategies import get_strategy

        get_strategy(s["strategy"])
    return config


def _build(data, out, s: dict) -> RunConfig:
    from .data.audio import SilenceOptions
    from .data.splits import SplitOptions
    from .tasks.options import AugmentationOptions, AutoOptions, ClassifierOptions, HParams, ModelOptions

    seed = int(s.get("seed", 0))
    hp = replace(HParams(seed=seed), **{k: s[k] for k in ("epochs", "batch_size", "learning_rate", "dropout",
                                                           "label_smoothing", "cv_folds", "cv_group_by",
                                                           "flip_average") if k in s})
    if s.get("head", "auto") != "auto":
        hp = replace(hp, head=s["head"])
    if "class_weights" in s:
        hp = replace(hp, class_weights=None if s["class_weights"] == "none" else s["class_weights"])
    aug = AugmentationOptions(enabled=s.get("augment"), flip=s.get("flip", True))
    if "augment_views" in s:
        aug = replace(aug, views=s["augment_views"])
    model = ModelOptions(s.get("backbone"), s.get("input_size"), **{k: s[k] for k in (
        "width", "grayscale", "base_model", "retrain_last", "input_scaling") if k in s})
    options = ClassifierOptions(
        model=model, hparams=hp, augmentation=aug,
        silence=SilenceOptions(enabled=not s.get("keep_silence", False), threshold_db=s.get("silence_db", -60.0)),
        cache_dir=s.get("cache_dir"), threads=s.get("threads"),
        fine_tune=fine_tune_options(s.get("fine_tune"), s.get("fine_tune_epochs")),
        engine=engine_options(s.get("engine", "local"), s.get("ray_address"), s.get("ray_actors")),
    )
    split = SplitOptions.parse(s["split"], seed=seed) if "split" in s else SplitOptions(seed=seed)
    max_flash, max_ram = _size(s.get("max_flash")), _size(s.get("max_ram"))
    if s.get("device"):
        from .devices import limits

        max_flash, max_ram = limits(s["device"], max_flash, max_ram)
    if "budget" in s and not s.get("auto"):
        raise ValueError("--budget goes with --auto")
    budget = s.get("budget", "10m")  # seconds, or a duration such as 10m
    seconds = budget if isinstance(budget, (int, float)) and not isinstance(budget, bool) else \
        AutoOptions.parse_budget(budget)
    auto = AutoOptions(seconds) if s.get("auto") else None
    from .export.stage import parse_formats

    formats = parse_formats(s.get("formats", DEFAULT_FORMATS))
    return RunConfig.create(data, out, options, split, formats, s.get("task"), max_flash, max_ram, auto,
                            bool(s.get("distill")), s.get("strategy"))


def _size(value) -> int | None:
    if value is None or isinstance(value, int):
        return value
    from .export.device import parse_size

    return parse_size(str(value))


def fine_tune_options(value, epochs: int | None):
    """--fine-tune K|auto (a number of last blocks, or chosen on validation) as FineTuneOptions."""
    from .tasks.options import FineTuneOptions

    depth: int | str | None = None
    if isinstance(value, bool):
        raise ValueError("fine_tune must be a number of blocks (0, 1, 2, 3) or \"auto\"")
    if isinstance(value, int):
        depth = value
    elif value is not None:
        text = str(value).strip().lower()
        if text != "auto":
            if not text.isdigit():
                raise ValueError(f"--fine-tune {text!r}: give a number of blocks (0, 1, 2, ...) or auto")
            depth = int(text)
        else:
            depth = "auto"
    return FineTuneOptions(depth=depth, **({"epochs": epochs, "paired_epochs": epochs} if epochs is not None else {}))


def engine_options(engine: str, ray_address: str | None, ray_actors: int | None):
    from .tasks.options import EngineOptions

    if engine == "local" and ray_actors is not None:
        raise ValueError("--ray-actors goes with --engine ray")
    return EngineOptions(engine, ray_address if engine == "ray" else None, ray_actors)
