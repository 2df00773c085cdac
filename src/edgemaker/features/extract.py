"""Embeddings for many files: cached lookups first, then decoding overlapped with inference.

A sample yields one window (an image) or many (a sound clip) per view; view 0 is the clean input,
views 1.. are augmented. Decoding runs in background threads (Pillow, soundfile and soxr release
the GIL), ONNX Runtime runs batches in the calling thread, and every finished batch is committed to
the cache, so a killed run resumes from what it had finished.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass

import numpy as np

from ..backbones.runtime import Backbone
from ..data.sources import read_bytes
from ..data.images import Augmentation, ImageDecodeError, decode_image, needed_side, preprocess
from ..data.validate import Sample
from ..errors import DataError
from ..parallel import ordered_map
from ..progress import Progress, SilentProgress
from .cache import FeatureCache, Key


@dataclass
class Embeddings:
    """Window embeddings (or any per-window rows): row i belongs to sample `owner[i]`, view `view[i]`."""

    vectors: np.ndarray  # (rows, dim) float32; (rows, C, H, W) float16 for cut activations
    owner: np.ndarray  # (rows,) int
    view: np.ndarray  # (rows,) int
    n_samples: int

    def clean(self) -> Embeddings:
        keep = self.view == 0
        return Embeddings(self.vectors[keep], self.owner[keep], self.view[keep], self.n_samples)

    def aggregate(self, row_values: np.ndarray) -> np.ndarray:
        """Mean of per-row values (e.g. probabilities) over each sample's rows -> (n_samples, ...)."""
        out = np.zeros((self.n_samples, *row_values.shape[1:]), np.float64)
        np.add.at(out, self.owner, row_values)
        counts = np.bincount(self.owner, minlength=self.n_samples).reshape(-1, *([1] * (row_values.ndim - 1)))
        return out / np.maximum(counts, 1)


def view_seed(content: str, view: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{content}:{view}".encode()).digest()[:8], "little")


def cache_tag(backbone: Backbone, augmentation, view: int, extra: str = "") -> str:
    """Backbone id (+ preparation settings) for the clean view; plus augmentation for the others."""
    tag = backbone.spec.cache_id + (f"|{extra}" if extra else "")
    if view == 0 or augmentation is None:
        return tag
    aug = hashlib.sha256(repr(astuple(augmentation)).encode()).hexdigest()[:12]
    return f"{tag}|aug-{aug}"


def read_verified(sample: Sample) -> bytes:
    """The sample's bytes, checked against the hash validation saw (any engine, any machine)."""
    try:
        data = read_bytes(sample.path)
    except OSError as exc:
        raise DataError(f"{sample.path}: became unreadable during the run ({exc.strerror}); check the file") from None
    if hashlib.sha256(data).hexdigest() != sample.content:
        raise DataError(f"{sample.path}: file changed during the run; run again")
    return data




def _prepare_image(sample: Sample, views: Sequence[int], backbone: Backbone, augmentation: Augmentation | None):
    return prepare_image(read_verified(sample), sample, views, backbone.spec, augmentation)


def prepare_image(data: bytes, sample: Sample, views: Sequence[int], backbone_spec,
                  augmentation: Augmentation | None) -> list[np.ndarray]:
    """One (1, S, S, 3) uint8 tensor per view of an image's bytes, as the backbone takes it."""
    spec = backbone_spec.image
    assert spec is not None
    try:
        im = decode_image(data, needed_side(spec, augmentation if max(views) > 0 else None))
    except ImageDecodeError as exc:
        raise DataError(f"{sample.path}: {exc}") from None
    return [preprocess(im, spec, augmentation if v > 0 else None, view_seed(sample.content, v))[None] for v in views]


_DONE = object()


def _audio_windows(todo: list[tuple[Sample, list[int]]], backbone: Backbone, augmentation, silence,
                   workers: int, buffer_bytes: int = 32_000_000) -> Iterator[tuple[Sample, int, np.ndarray | None]]:
    """(sample, view, window) items in order, decoded in background threads; None ends a (sample, view).
    Each thread buffers at most `buffer_bytes` of windows ahead of the model."""
    from ..data.audio import AudioDecodeError, clip_windows

    spec = backbone.spec.audio
    assert spec is not None
    depth = max(8, buffer_bytes // (4 * spec.window_samples))
    stop = threading.Event()
    # Each worker handles every `workers`-th clip; a reorder buffer keeps the output in order.
    slots: list[queue.Queue] = [queue.Queue(maxsize=depth) for _ in range(workers)]

    def work(k: int) -> None:
        try:
            for i in range(k, len(todo), workers):
                sample, views = todo[i]
                data = read_verified(sample)
                for v in views:
                    aug = augmentation if v > 0 else None
                    try:
                        for w in clip_windows(data, spec, silence, aug, view_seed(sample.content, v)):
                            if stop.is_set():
                                return
                            slots[k].put((sample, v, w))
                    except AudioDecodeError as exc:
                        raise DataError(f"{sample.path}: {exc}") from None
                    slots[k].put((sample, v, None))
                slots[k].put(_DONE)
        except BaseException as exc:  # surfaced in the consumer
            slots[k].put(exc)

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(workers)]
    for t in threads:
        t.start()
    try:
        for i in range(len(todo)):
            slot = slots[i % workers]
            while True:
                item = slot.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _DONE:
                    break
                yield item
    finally:
        stop.set()
        for s in slots:  # unblock producers
            while not s.empty():
                s.get_nowait()


def extract_embeddings(
    samples: Sequence[Sample],
    backbone: Backbone,
    cache: FeatureCache | None,
    views: int = 0,
    augmentation=None,
    progress: Progress | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    desc: str = "extract",
    silence=None,
    engine=None,
) -> Embeddings:
    """Embed view 0 (clean) and `views` augmented views of every sample; see `Embeddings`.

    `engine`: computes what the cache lacks elsewhere (features/ray_engine.py); None: threads here.
    Either way this process is the one writer of the cache, one finished batch at a time."""
    if views and augmentation is None:
        raise ValueError("augmented views need an augmentation")
    silence = default_silence(backbone.spec, silence)
    extra = silence_tag(silence)
    dim = backbone.spec.feature_dim

    def tag_of(v: int) -> str:
        return cache_tag(backbone, augmentation, v, extra)

    store = _Vectors(cache, dim) if cache else None
    remote = None
    if engine is not None:
        def compute(todo, key_of, put):
            return engine.compute(todo, backbone, augmentation, silence, key_of, put)

        remote = (engine.name, compute)
    rows = extract_rows(samples, backbone.spec, tag_of, backbone.embed, store, views, augmentation, (dim,), progress,
                        batch_size, workers, desc, silence, remote)
    return Embeddings(rows.vectors.astype(np.float32, copy=False), rows.owner, rows.view, rows.n_samples)


def default_silence(spec, silence):
    """The silence options a sound backbone runs with (None for images)."""
    if spec.audio is None:
        return None
    from ..data.audio import SilenceOptions

    return silence or SilenceOptions()


def silence_tag(silence) -> str:
    """The part of a sound's cache tag that depends on silence removal ("" for images)."""
    return f"silence-{silence.enabled}-{silence.threshold_db}" if silence is not None else ""


class _Vectors:
    """FeatureCache with the row width bound, so it reads like any row store."""

    def __init__(self, cache: FeatureCache, dim: int) -> None:
        self.cache, self.dim = cache, dim

    def get_many(self, keys) -> dict[Key, np.ndarray]:
        return self.cache.get_many(keys, self.dim)

    def put_many(self, items) -> None:
        self.cache.put_many(items)


def extract_rows(samples: Sequence[Sample], spec, tag_of, run, store, views: int, augmentation, row_shape: tuple,
                 progress: Progress | None = None, batch_size: int = 16, workers: int | None = None,
                 desc: str = "extract", silence=None, remote=None) -> Embeddings:
    """What `run` (a batch of model inputs -> one row each) gives for every window of every sample
    and view, cached in `store` (get_many / put_many) under (content, tag_of(view), view).
    `remote`: (name, compute(todo, key_of, put)) runs the missing rows elsewhere (an engine) instead.

    The one loop behind embeddings and fine-tuning's cut activations: cached lookups first, then
    decoding in threads overlapped with `run` on batches, each finished batch committed."""
    progress = progress or SilentProgress()
    tags = [tag_of(v) for v in range(1 + views)]  # one string per view, shared by every key
    keys: list[list[Key]] = [[(s.content, tags[v], v) for v in range(1 + views)] for s in samples]
    found = store.get_many({k for row in keys for k in row}) if store else {}
    todo: dict[str, tuple[Sample, list[int]]] = {}
    for s, row in zip(samples, keys):
        missing = [k[2] for k in row if k not in found]
        if missing and s.content not in todo:
            todo[s.content] = (s, missing)

    workers = workers or max(1, min(4, os.cpu_count() or 1))
    batch_x: list[np.ndarray] = []
    batch_k: list[Key] = []
    partial: dict[Key, list[np.ndarray]] = {}
    finished: list[Key] = []
    bar = progress.bar(sum(len(v) for _, v in todo.values()), desc)
    shim = _SpecOnly(spec)

    def flush() -> None:
        if batch_x:
            vectors = run(np.concatenate(batch_x))
            for k, vec in zip(batch_k, vectors):
                partial[k].append(vec)
            batch_x.clear()
            batch_k.clear()
        done = {}
        for k in finished:
            windows = partial.pop(k)
            if not windows:
                raise DataError(f"no audio windows for {k[0][:12]}…; the clip may be empty")
            done[k] = np.stack(windows)
        finished.clear()
        if done:
            if store:
                store.put_many(done)
            found.update(done)
            bar.update(len(done))

    def key_of(sample: Sample, v: int) -> Key:
        return (sample.content, tags[v], v)

    if remote is not None and todo:
        def put(done: dict[Key, np.ndarray]) -> None:
            if store:
                store.put_many(done)
            found.update(done)
            bar.update(len(done))

        progress.log(f"{desc}: {len(todo)} samples to embed on {remote[0]}, "
                     f"{len(samples) - len(todo)} found in the cache")
        progress.log(f"{desc}: {remote[1](list(todo.values()), key_of, put)}")
    elif spec.audio is not None:
        for sample, v, window in _audio_windows(list(todo.values()), shim, augmentation, silence, workers):
            key = key_of(sample, v)
            partial.setdefault(key, [])
            if window is None:
                finished.append(key)
            else:
                batch_x.append(window[None])
                batch_k.append(key)
            if len(batch_x) >= batch_size:
                flush()
        flush()
    else:
        jobs = [(s, v, shim, augmentation) for s, v in todo.values()]
        with ThreadPoolExecutor(workers) as pool:
            for (sample, wanted), tensors in zip(todo.values(), ordered_map(pool, jobs, _prepare_image, 4 * batch_size)):
                for v, x in zip(wanted, tensors):
                    key = key_of(sample, v)
                    partial[key] = []
                    batch_x.append(x)
                    batch_k.append(key)
                    finished.append(key)
                if len(batch_x) >= batch_size:
                    flush()
            flush()
    bar.close()

    # Sample i's views in order; owner and view ids from the block lengths (no per-file arrays).
    blocks = [found[k] for row in keys for k in row]
    if not blocks:
        return Embeddings(np.zeros((0, *row_shape), np.float32), np.zeros(0, int), np.zeros(0, int), len(samples))
    lengths = np.fromiter((len(b) for b in blocks), int, count=len(blocks))
    owners = np.repeat(np.repeat(np.arange(len(keys)), 1 + views), lengths)
    view_ids = np.repeat(np.tile(np.arange(1 + views), len(keys)), lengths)
    return Embeddings(np.concatenate(blocks), owners, view_ids, len(samples))


class _SpecOnly:
    """What the decoders read of a backbone: its spec."""

    def __init__(self, spec) -> None:
        self.spec = spec
