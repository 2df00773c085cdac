"""What compare and curve share: the data and its one split, options per backbone and seed, a
network trained from scratch reused across runs, and one fitted classifier with its timings."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_json
from ..backbones import get_spec, list_backbones
from ..backbones.spec import BackboneSpec, WeightsSource
from ..data.splits import SplitOptions, Splits, make_splits
from ..data.validate import Sample, ValidationReport, validate_folder
from ..errors import EdgemakerError
from ..features.cache import FeatureCache
from ..paths import cache_dir as default_cache_dir
from ..progress import Progress
from ..tasks.options import ClassifierOptions


def parse_backbones(text: str, modality: str | None = None) -> list[str]:
    """'a,b,c' -> names, each registered (an unknown one lists the known ones) and of one modality.
    `small_cnn` names the from-scratch network of the data's modality (small_cnn_mel for sounds)."""
    from ..tasks.classifier import scratch_network

    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise EdgemakerError("--backbones: give at least one backbone name, e.g. efficientnet_lite0,small_cnn")
    if modality is None:  # the other names decide which small_cnn is meant
        others = {get_spec(n).modality for n in names if n != "small_cnn"}
        modality = others.pop() if len(others) == 1 else None
    if modality is not None:
        names = list(dict.fromkeys(scratch_network(n, modality) for n in names))
    specs = [get_spec(n) for n in names]  # EdgemakerError naming the known ones
    kinds = {s.modality for s in specs}
    if len(kinds) > 1 or (modality and kinds != {modality}):
        wrong = [s.name for s in specs if s.modality != (modality or specs[0].modality)]
        known = ", ".join(s.name for s in list_backbones(modality or specs[0].modality))
        raise EdgemakerError(f"--backbones: {', '.join(wrong)} do not take {modality or specs[0].modality} input; "
                             f"for this data choose from {known}")
    return names


def seeds(seed: int, repeats: int) -> list[int]:
    if repeats < 1:
        raise EdgemakerError(f"--repeats {repeats}: give at least 1")
    if seed + repeats - 1 >= 2**32:  # repeat r trains with seed + r; the generators take 0 .. 2**32 - 1
        raise EdgemakerError(f"invalid option: --seed {seed} with --repeats {repeats} runs past {2**32 - 1}; "
                             f"use --seed {2**32 - repeats} or lower")
    return [seed + r for r in range(repeats)]


def load_data(data_dir: Path, cache: FeatureCache, progress: Progress, task: str | None,
              split_seed: int) -> tuple[ValidationReport, Splits]:
    """The folder validated read-only and split once (seeded, stratified; a folder's own
    train/val/test is respected), so every backbone and size sees the same test samples."""
    from ..data.sources import data_root

    if not data_root(data_dir).is_dir():
        raise EdgemakerError(f"{data_dir}: not a folder; give a folder with one sub-folder of files per class")
    report = validate_folder(data_dir, cache=cache, progress=progress, modality=task)
    return report, make_splits(report, SplitOptions(seed=split_seed))


def options_for(backbone: str | None, seed: int, cache_dir: Path | None, threads: int | None,
                template: ClassifierOptions | None = None) -> ClassifierOptions:
    """`template` (default: train's defaults) with this backbone, training seed, cache and threads."""
    t = template or ClassifierOptions()
    return dataclasses.replace(t, model=dataclasses.replace(t.model, backbone=backbone),
                               hparams=dataclasses.replace(t.hparams, seed=seed),
                               cache_dir=cache_dir or t.cache_dir, threads=threads or t.threads)


def embedding_rows(cache: FeatureCache) -> int:
    """Rows in the embedding cache: the difference over a step is what it computed."""
    db = sqlite3.connect(cache.path, timeout=120)
    try:
        return int(db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    finally:
        db.close()


# -- networks trained from scratch, reused --------------------------------------------------------

def _trained_key(spec: BackboneSpec, train: Sequence[Sample], val: Sequence[Sample], options: ClassifierOptions) -> str:
    import torch

    from .. import __version__

    what = {"spec": spec.cache_id, "model": dataclasses.asdict(options.model),
            "hparams": dataclasses.asdict(options.hparams), "augmentation": dataclasses.asdict(options.augmentation),
            "train": [(s.content, s.label) for s in train], "val": [(s.content, s.label) for s in val],
            "torch": torch.__version__, "edgemaker": __version__}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def trained_network(spec: BackboneSpec, train: Sequence[Sample], val: Sequence[Sample], options: ClassifierOptions,
                    progress: Progress) -> tuple[BackboneSpec, dict, bool]:
    """A backbone whose weights a run trains (small_cnn): trained once per (data, options, seed) and
    remembered under the cache, like embeddings; returns (trained spec, training summary, reused)."""
    from ..tasks.classifier import train_backbone

    root = (options.cache_dir or default_cache_dir()) / "experiments" / "trained"
    record = root / f"{spec.name}-{_trained_key(spec, train, val, options)}.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        weights = Path(saved["weights"])
        if weights.is_file():
            image = dataclasses.replace(spec.image, size=saved["input_size"]) if spec.image else None
            trained = dataclasses.replace(spec, image=image, weights=WeightsSource("file", str(weights), saved["sha256"]),
                                          feature_dim=saved["feature_dim"], parameters=saved["parameters"],
                                          description=saved["description"])
            return trained, saved["summary"], True
    trained, summary = train_backbone(spec, train, val, options, progress)
    write_json(record, {"weights": trained.weights.location, "sha256": trained.weights.sha256,
                        "input_size": trained.image.size if trained.image else None,
                        "feature_dim": trained.feature_dim, "parameters": trained.parameters,
                        "description": trained.description, "summary": summary})
    return trained, summary, False


# -- one fitted classifier ----------------------------------------------------------------------

@dataclass
class Fitted:
    clf: object  # tasks.classifier.Classifier
    extract_s: float
    head_s: float
    network_s: float = 0.0  # training a from-scratch network (as measured when it was trained)
    network_reused: bool = False
    new_rows: int = 0  # embeddings computed (not found in the cache)
    network: dict = field(default_factory=dict)


def fit(modality: str, backbone: str | None, train: Sequence[Sample], val: Sequence[Sample], options: ClassifierOptions,
        cache: FeatureCache, progress: Progress) -> Fitted:
    """Classifier.create for one backbone (head settings chosen on validation, as `train` does);
    a from-scratch network comes from `trained_network`, so a repeat does not train it again."""
    from ..tasks.classifier import classifier_for

    spec = get_spec(backbone) if backbone else None  # None: the task's default candidates, chosen on validation
    before = embedding_rows(cache)
    network, reused, network_s = {}, False, 0.0
    if spec is not None and spec.weights.kind == "trained":
        t0 = time.perf_counter()
        spec, network, reused = trained_network(spec, train, val, options, progress)
        network_s = float(network.get("train_s", time.perf_counter() - t0))
    clf = classifier_for(modality).create(train, val, options, progress, cache, specs=[spec] if spec else None)
    clf.network = network
    return Fitted(clf, clf.timings["extract_s"], clf.timings["train_s"], network_s, reused,
                  embedding_rows(cache) - before, network)


def spread(values: Sequence[float]) -> dict:
    import numpy as np

    v = np.asarray(values, float)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
            "min": round(float(v.min()), 4), "max": round(float(v.max()), 4), "values": [round(float(x), 4) for x in v]}
