"""All the embedding work of a run as one Ray job per backbone (`--engine ray`).

A run embeds train (clean + augmented views), validation and test. Extracted split by split, each
call is its own Ray Data pipeline, and each pays the job's start-up (tasks scheduled, the actor
started, the ONNX graph loaded) again: seconds, more than the work on a small folder. Here every
split's missing (sample, views) go into one pipeline (rows carry their cache key), one actor pool
embeds them all, and the driver writes them to the same SQLite cache in batches; the per-split
calls that follow then find everything in the cache and start nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..data.validate import Sample
from ..progress import Progress, SilentProgress
from .cache import FeatureCache, Key
from .extract import cache_tag, default_silence, silence_tag


def embed_all(parts: Sequence[tuple[Sequence[Sample], int]], backbone, cache: FeatureCache, augmentation, silence,
              engine, progress: Progress | None = None, desc: str = "extract") -> int:
    """Embed what the cache lacks of every (samples, augmented views) part in one `engine.compute` call.

    A sample in several parts is embedded once, with the union of the views asked for. Returns the
    number of (sample, view) embeddings computed."""
    progress = progress or SilentProgress()
    silence = default_silence(backbone.spec, silence)
    extra = silence_tag(silence)
    dim = backbone.spec.feature_dim

    def key_of(sample: Sample, v: int) -> Key:
        return (sample.content, cache_tag(backbone, augmentation, v, extra), v)

    wanted: dict[str, tuple[Sample, set[int]]] = {}
    for samples, views in parts:
        if views and augmentation is None:
            raise ValueError("augmented views need an augmentation")
        for s in samples:
            wanted.setdefault(s.content, (s, set()))[1].update(range(1 + views))
    found = set()
    keys = [key_of(s, v) for s, vs in wanted.values() for v in vs]
    for start in range(0, len(keys), 10_000):  # presence only, in slices: the vectors are not kept here
        found.update(cache.get_many(keys[start:start + 10_000], dim))
    todo = [(s, missing) for s, vs in wanted.values() if (missing := sorted(v for v in vs if key_of(s, v) not in found))]
    del keys, found
    if not todo:
        return 0
    total = sum(len(v) for _, v in todo)
    bar = progress.bar(total, desc)

    def put(done: dict[Key, object]) -> None:
        cache.put_many(done)
        bar.update(len(done))

    progress.log(f"{desc}: {len(todo)} samples ({total} views) to embed on {engine.name} in one job, "
                 f"{len(wanted) - len(todo)} found in the cache")
    t = time.perf_counter()
    where = engine.compute(todo, backbone, augmentation, silence, key_of, put)
    bar.close()
    progress.log(f"{desc}: {where} in {time.perf_counter() - t:.1f} s")
    return total


def embed_run(classifier, splits, options, cache: FeatureCache, progress: Progress | None = None) -> float:
    """Before `classifier.create`: every candidate backbone's train, validation and test embeddings,
    one Ray job per backbone. Test joins the job only when there is one candidate (with several,
    only the winner's test split is embedded, later). Backbones whose weights the run trains are
    left to create(), and so are fine-tuning runs (create() refuses a bad fine-tune setting before
    any extraction). Returns the seconds spent."""
    from ..backbones import get_spec
    from ..backbones.runtime import Backbone
    from ..tasks.classifier import augmentation_for
    from .engines import engine_for

    if options.fine_tune.active:
        return 0.0
    t = time.perf_counter()
    names = classifier.candidate_backbones(options)
    engine = engine_for(options.engine)
    for name in names:
        spec = get_spec(name)
        if spec.weights.kind == "trained":
            continue
        if options.model.input_size and spec.image is not None:
            spec = spec.with_image_size(options.model.input_size)
        backbone = Backbone(spec, options.threads, options.cache_dir)
        views = options.augmentation.active_views
        parts = [(splits.train, views), (splits.val, 0)] + ([(splits.test, 0)] if len(names) == 1 else [])
        embed_all(parts, backbone, cache, augmentation_for(spec, options) if views else None, options.silence,
                  engine, progress, f"extract train+val{'+test' if len(names) == 1 else ''} ({name})")
    return time.perf_counter() - t
