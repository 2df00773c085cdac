"""Seeded, stratified train/val/test splits, recorded so a run can be reproduced and audited."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

from ..errors import DataError
from .validate import Sample, ValidationReport

TINY_CLASS = 10  # a class with fewer files than this is flagged (data inspect, and a warning in every run)


@dataclass(frozen=True)
class SplitOptions:
    """Fractions for folders without their own split; `seed` makes the split reproducible."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.train, self.val, self.test) <= 0 or abs(self.train + self.val + self.test - 1) > 1e-6:
            raise ValueError("split fractions must be positive and sum to 1 (e.g. 0.8/0.1/0.1)")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be within 0..{2**32 - 1} (got {self.seed})")

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> SplitOptions:
        """'80/10/10' or '0.8,0.1,0.1' -> SplitOptions."""
        parts = [float(p) for p in text.replace(",", "/").split("/")]
        if len(parts) != 3 or not all(0 < p < math.inf for p in parts):
            raise ValueError(f"--split {text!r}: give three positive numbers: train/val/test, e.g. 80/10/10")
        total = sum(parts)
        return cls(*(p / total for p in parts), seed=seed)


@dataclass
class Splits:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    classes: list[str]
    how: str  # a sentence for the report

    def items(self) -> list[tuple[str, list[Sample]]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def sizes(self) -> dict[str, int]:
        return {name: len(samples) for name, samples in self.items()}

    def tiny_class_warnings(self, modality: str) -> list[str]:
        """One line per class with fewer than TINY_CLASS files: the run goes on, but what it measures
        on that class rests on a file or two."""
        what = "sound files" if modality == "audio" else "images"
        counts: dict[str, dict[str, int]] = defaultdict(lambda: {"train": 0, "val": 0, "test": 0})
        for name, samples in self.items():
            for s in samples:
                counts[s.label][name] += 1
        out = []
        for label in self.classes:
            c = counts[label]
            if sum(c.values()) < TINY_CLASS:
                out.append(f"class {label!r} has only {sum(c.values())} {what} ({c['train']} train, {c['val']} "
                           f"validation, {c['test']} test): its accuracy rests on too few to measure; add at least "
                           f"{TINY_CLASS} {what} to it")
        return out


def _carve(samples: list[Sample], fraction: float, rng: random.Random) -> tuple[list[Sample], list[Sample]]:
    """Take `fraction` of each class out of `samples` (at least one each); return (rest, carved)."""
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    rest, carved = [], []
    for label in sorted(by_class):
        group = sorted(by_class[label], key=lambda s: str(s.path))
        rng.shuffle(group)
        n = max(1, round(len(group) * fraction))
        carved += group[:n]
        rest += group[n:]
    return rest, carved


def _min_per_class(samples: list[Sample], need: int, root, what: str) -> None:
    counts: dict[str, int] = defaultdict(int)
    for s in samples:
        counts[s.label] += 1
    for label, n in sorted(counts.items()):
        if n < need:
            raise DataError(
                f"{root}: class '{label}' has {n} usable image(s) {what}; it needs at least {need} "
                f"to make train/val/test splits: add images to that class"
            )


def make_splits(report: ValidationReport, options: SplitOptions = SplitOptions()) -> Splits:
    rng = random.Random(options.seed)
    classes = report.classes
    if not report.presplit:
        _min_per_class(report.samples, 3, report.root, "")
        rest, test = _carve(report.samples, options.test, rng)
        train, val = _carve(rest, options.val / (options.train + options.val), rng)
        how = (f"stratified random split {options.train:.0%}/{options.val:.0%}/{options.test:.0%} "
               f"per class, seed {options.seed}")
        return Splits(train, val, test, classes, how)

    given = {name: [s for s in report.samples if s.split == name] for name in ("train", "val", "test")}
    train, val, test = given["train"], given["val"], given["test"]
    notes = ["train/val/test folders respected"]
    missing = [name for name in ("val", "test") if not given[name]]
    if missing:
        _min_per_class(train, 1 + len(missing), report.root / "train", "in train")
    if not test:
        train, test = _carve(train, options.test / (options.train + options.test), rng)
        notes.append(f"test carved from train (stratified, seed {options.seed})")
    if not val:
        train, val = _carve(train, options.val / (options.train + options.val), rng)
        notes.append(f"val carved from train (stratified, seed {options.seed})")
    missing_train = sorted(set(classes) - {s.label for s in train})
    if missing_train:
        raise DataError(
            f"{report.root / 'train'}: class '{missing_train[0]}' has no training images; add some to "
            f"{report.root / 'train' / missing_train[0]}"
        )
    return Splits(train, val, test, classes, "; ".join(notes))
