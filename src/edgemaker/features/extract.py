"""Embeddings for many files: cached lookups first, then decoding overlapped with inference.

Decoding and resizing run in a thread pool (Pillow releases the GIL), ONNX Runtime runs batches in
the calling thread, and every finished batch is committed to the cache, so a killed run resumes
from what it had finished.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import astuple

import numpy as np

from ..backbones.runtime import Backbone
from ..data.images import Augmentation, ImageDecodeError, decode_image, needed_side, preprocess
from ..data.validate import Sample
from ..errors import DataError
from ..progress import Progress, SilentProgress
from .cache import FeatureCache, Key


def view_seed(content: str, view: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{content}:{view}".encode()).digest()[:8], "little")


def cache_tag(backbone: Backbone, augmentation: Augmentation | None, view: int) -> str:
    """Backbone id for the clean view; backbone id plus augmentation settings for the others."""
    if view == 0 or augmentation is None:
        return backbone.spec.cache_id
    aug = hashlib.sha256(repr(astuple(augmentation)).encode()).hexdigest()[:12]
    return f"{backbone.spec.cache_id}|aug-{aug}"


def _prepare(sample: Sample, views: Sequence[int], backbone: Backbone, augmentation: Augmentation | None):
    spec = backbone.spec.image
    assert spec is not None
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        raise DataError(f"{sample.path}: became unreadable during the run ({exc.strerror}); check the file") from None
    if hashlib.sha256(data).hexdigest() != sample.content:
        raise DataError(f"{sample.path}: file changed during the run; run again")
    try:
        im = decode_image(data, needed_side(spec, augmentation if max(views) > 0 else None))
    except ImageDecodeError as exc:
        raise DataError(f"{sample.path}: {exc}") from None
    return [
        preprocess(im, spec, augmentation if v > 0 else None, view_seed(sample.content, v)) for v in views
    ]


def _ordered(pool: ThreadPoolExecutor, jobs: list, fn, window: int) -> Iterator:
    """Like pool.map, but keeps at most `window` jobs in flight (bounded memory)."""
    pending: deque[Future] = deque()
    it = iter(jobs)
    for job in it:
        pending.append(pool.submit(fn, *job))
        if len(pending) >= window:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, *nxt))


def extract_embeddings(
    samples: Sequence[Sample],
    backbone: Backbone,
    cache: FeatureCache | None,
    views: int = 0,
    augmentation: Augmentation | None = None,
    progress: Progress | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    desc: str = "extract",
) -> np.ndarray:
    """Return (N, 1 + views, dim) float32: view 0 is the clean image, views 1.. are augmented."""
    progress = progress or SilentProgress()
    if views and augmentation is None:
        raise ValueError("augmented views need an Augmentation")
    dim = backbone.spec.feature_dim
    keys: list[list[Key]] = [
        [(s.content, cache_tag(backbone, augmentation, v), v) for v in range(1 + views)] for s in samples
    ]
    found = cache.get_many({k for row in keys for k in row}, dim) if cache else {}
    todo: dict[str, tuple[Sample, list[int]]] = {}
    for s, row in zip(samples, keys):
        missing = [k[2] for k in row if k not in found]
        if missing and s.content not in todo:
            todo[s.content] = (s, missing)

    total = sum(len(v) for _, v in todo.values())
    bar = progress.bar(total, desc)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    batch_x: list[np.ndarray] = []
    batch_k: list[Key] = []

    def flush() -> None:
        if not batch_x:
            return
        vectors = backbone.embed(np.stack(batch_x))
        new = {k: vectors[i] for i, k in enumerate(batch_k)}
        if cache:
            cache.put_many(new)
        found.update(new)
        bar.update(len(batch_k))
        batch_x.clear()
        batch_k.clear()

    jobs = [(s, v, backbone, augmentation) for s, v in todo.values()]
    with ThreadPoolExecutor(workers) as pool:
        for (sample, wanted), tensors in zip(todo.values(), _ordered(pool, jobs, _prepare, 4 * batch_size)):
            for v, x in zip(wanted, tensors):
                batch_x.append(x)
                batch_k.append((sample.content, cache_tag(backbone, augmentation, v), v))
                if len(batch_x) >= batch_size:
                    flush()
        flush()
    bar.close()
    out = np.empty((len(samples), 1 + views, dim), np.float32)
    for i, row in enumerate(keys):
        for v, k in enumerate(row):
            out[i, v] = found[k]
    return out
