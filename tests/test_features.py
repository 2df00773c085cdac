"""Embedding cache and extraction: reuse, resume after a kill, concurrent runs, damaged files."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from edgemaker import validate_folder
from edgemaker.backbones import get_spec
from edgemaker.backbones.runtime import Backbone
from edgemaker.data.images import Augmentation
from edgemaker.errors import DataError
from edgemaker.features.cache import FeatureCache
from edgemaker.features.extract import extract_embeddings


class Counting:
    """Wraps a backbone and counts how many images it embedded; can fail after n batches."""

    def __init__(self, inner: Backbone, fail_after: int | None = None) -> None:
        self.inner, self.spec, self.images, self.batches, self.fail_after = inner, inner.spec, 0, 0, fail_after

    def embed(self, batch):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.batches += 1
        self.images += len(batch)
        return self.inner.embed(batch)


@pytest.fixture(scope="module")
def lite0():
    return Backbone(get_spec("efficientnet_lite0"))


def test_second_extraction_is_served_from_the_cache(image_folder, tmp_path, lite0):
    samples = validate_folder(image_folder).samples
    cache = FeatureCache(tmp_path / "f.sqlite")
    first = Counting(lite0)
    emb = extract_embeddings(samples, first, cache, views=2, augmentation=Augmentation())
    assert emb.vectors.shape == (90, 1280) and first.images == 90
    assert (np.bincount(emb.owner) == 3).all() and sorted(set(emb.view.tolist())) == [0, 1, 2]
    a = emb.vectors.reshape(30, 3, 1280)  # rows are sample-major, views in order
    again = Counting(lite0)
    b = extract_embeddings(samples, again, cache, views=2, augmentation=Augmentation())
    assert again.images == 0 and np.array_equal(emb.vectors, b.vectors)
    # Views differ from the clean image and from each other; the clean view equals a plain run.
    assert not np.allclose(a[:, 0], a[:, 1]) and not np.allclose(a[:, 1], a[:, 2])
    plain = extract_embeddings(samples, lite0, None)
    assert np.allclose(plain.vectors, a[:, 0], atol=1e-5) and np.array_equal(plain.owner, np.arange(30))
    # Different augmentation settings are different cache entries.
    other = Counting(lite0)
    extract_embeddings(samples, other, cache, views=1, augmentation=Augmentation(rotation_degrees=5))
    assert other.images == 30


def test_a_killed_extraction_resumes_from_committed_batches(image_folder, tmp_path, lite0):
    samples = validate_folder(image_folder).samples
    cache = FeatureCache(tmp_path / "f.sqlite")
    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(samples, Counting(lite0, fail_after=1), cache, batch_size=8)
    resumed = Counting(lite0)
    out = extract_embeddings(samples, resumed, cache, batch_size=8)
    assert resumed.images == 30 - 8
    assert np.allclose(out.vectors, extract_embeddings(samples, lite0, None).vectors, atol=1e-5)


def _writer(path: str, seed: int) -> None:
    cache = FeatureCache(Path(path))
    rng = np.random.default_rng(seed)
    for batch in range(20):
        cache.put_many({(f"c{seed}-{batch}-{i}", "bb", 0): rng.random(16, dtype=np.float32) for i in range(25)})
    cache.close()


def test_two_processes_share_one_cache_without_corruption(tmp_path):
    path = tmp_path / "shared.sqlite"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), seed)) for seed in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = FeatureCache(path)
    keys = [(f"c{s}-{b}-{i}", "bb", 0) for s in (1, 2) for b in range(20) for i in range(25)]
    assert len(cache.get_many(keys, 16)) == 1000


def test_a_cache_locked_by_another_process_at_open_is_waited_for_not_set_aside(tmp_path, monkeypatch):
    """Another run opening or writing the same file can make opening fail with "database is locked";
    that is not damage: every store in the cache file (embeddings, activations) retries the open, and
    the rows already there stay."""
    import sqlite3

    from edgemaker.features.activations import ActivationStore

    path = tmp_path / "f.sqlite"
    first = FeatureCache(path)
    first.put_many({("a", "b", 0): np.ones(4, np.float32)})
    first.close()
    real, failures = sqlite3.connect, []

    def busy_twice(*args, **kwargs):
        db = real(*args, **kwargs)
        if len(failures) < 2:
            failures.append(1)
            db.close()
            raise sqlite3.OperationalError("database is locked")
        return db

    monkeypatch.setattr(sqlite3, "connect", busy_twice)
    cache = FeatureCache(path)
    assert len(failures) == 2 and not list(tmp_path.glob("f.sqlite.corrupt-*"))
    assert np.array_equal(cache.get_many([("a", "b", 0)], 4)[("a", "b", 0)], np.ones((1, 4)))
    failures.clear()
    ActivationStore(path).close()
    assert len(failures) == 2

    def failing(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", failing)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):  # not a lock: raised at once, nothing moved
        FeatureCache(path)
    assert not list(tmp_path.glob("f.sqlite.corrupt-*"))


def test_a_damaged_cache_file_is_set_aside_and_rebuilt(tmp_path):
    path = tmp_path / "f.sqlite"
    path.write_bytes(b"garbage, not sqlite" * 100)
    cache = FeatureCache(path)
    cache.put_many({("a", "b", 0): np.ones(4, np.float32)})
    assert np.array_equal(cache.get_many([("a", "b", 0)], 4)[("a", "b", 0)], np.ones((1, 4)))
    assert list(tmp_path.glob("f.sqlite.corrupt-*"))


def test_a_file_changed_after_validation_is_an_error_not_a_wrong_vector(image_folder, lite0):
    samples = validate_folder(image_folder).samples
    samples[0].path.write_bytes((image_folder / "blobs" / "blobs_05.png").read_bytes())
    with pytest.raises(DataError, match="changed during the run"):
        extract_embeddings(samples[:3], lite0, None)
