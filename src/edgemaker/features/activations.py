"""Activations at a fine-tuning cut (the input of the first unfrozen block), cached per sample and view.

Fine-tuning the last K blocks only needs what enters them; computing that once and storing it
(float16, content-addressed like the embeddings) lets every epoch run just the last K blocks. The
rows live in their own table of the features SQLite file, one transaction per batch, so a killed
run resumes from what it had finished.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..backbones.runtime import GRAPH_VERSION, ONNX_OPSET, make_session
from ..backbones.spec import BackboneSpec
from ..data.validate import Sample
from ..paths import cache_dir
from ..progress import Progress, SilentProgress
from .cache import Key, connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS activations (
    content TEXT NOT NULL, tag TEXT NOT NULL, view INTEGER NOT NULL,
    shape TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (content, tag, view)
) WITHOUT ROWID;
"""


class ActivationStore:
    """float16 activations keyed by (content sha256, backbone cache id + cut [+ augmentation], view)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / "features.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, keys: Iterable[Key]) -> dict[Key, np.ndarray]:
        found: dict[Key, np.ndarray] = {}
        keys = list(keys)
        with self._lock:
            for start in range(0, len(keys), 300):
                chunk = keys[start : start + 300]
                where = " OR ".join(["(content=? AND tag=? AND view=?)"] * len(chunk))
                for content, tag, view, shape, blob in self._db.execute(
                    f"SELECT content, tag, view, shape, data FROM activations WHERE {where}",
                    [x for key in chunk for x in key],
                ):
                    dims = tuple(int(d) for d in shape.split("x"))
                    arr = np.frombuffer(blob, dtype=np.float16)
                    if arr.size == int(np.prod(dims)):
                        found[(content, tag, view)] = arr.reshape(dims)
        return found

    def put_many(self, items: Mapping[Key, np.ndarray]) -> None:
        """One transaction: the whole batch lands or none of it does."""
        rows = [(*key, "x".join(map(str, a.shape)), np.ascontiguousarray(a, np.float16).tobytes())
                for key, a in items.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO activations VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


def prefix_onnx(spec: BackboneSpec, cut: int, build_prefix: Callable, root: Path | None = None) -> Path:
    """ONNX graph uint8 NHWC image -> activation entering block `cut`, exported once per weights and cut.

    `build_prefix(spec, cut)` returns the float NCHW torch module (the backbone up to the cut)."""
    from ..backbones.runtime import _with_uint8_input

    target = (root or cache_dir()) / "backbones" / f"{spec.cache_id}-cut{cut}-g{GRAPH_VERSION}.onnx"
    if target.is_file():
        return target
    import torch

    assert spec.image is not None
    module = _with_uint8_input(build_prefix(spec, cut), spec.image)
    dummy = torch.zeros(1, spec.image.size, spec.image.size, 3, dtype=torch.uint8)
    with atomic_path(target, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (dummy,), str(tmp), input_names=["image"], output_names=["activation"],
                          dynamic_axes={"image": {0: "batch"}, "activation": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)
    return target


class PrefixRunner:
    """Runs the prefix graph in ONNX Runtime; `calls` counts images computed (tests check reuse)."""

    def __init__(self, graph: Path, threads: int | None) -> None:
        self._session = make_session(graph, threads)
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += len(batch)
        return self._session.run(["activation"], {"image": np.ascontiguousarray(batch)})[0].astype(np.float16)


def extract_activations(samples: Sequence[Sample], views: int, augmentation, spec: BackboneSpec, tag_of: Callable,
                        run: PrefixRunner, store: ActivationStore | None, progress: Progress | None = None,
                        batch_size: int = 16, desc: str = "activations") -> np.ndarray:
    """(N, 1 + views, C, H, W) float16: view 0 clean, views 1.. augmented exactly as the embeddings'.

    `tag_of(view)` gives the cache tag of a view. Cached rows are reused; missing ones are computed
    (decoding in threads, as for embeddings) and committed batch by batch."""
    from ..features.extract import _prepare_image, ordered_map

    progress = progress or SilentProgress()
    keys = [[(s.content, tag_of(v), v) for v in range(1 + views)] for s in samples]
    found = store.get_many({k for row in keys for k in row}) if store else {}
    todo: dict[str, tuple[Sample, list[int]]] = {}
    for s, row in zip(samples, keys):
        missing = [k[2] for k in row if k not in found]
        if missing and s.content not in todo:
            todo[s.content] = (s, missing)
    bar = progress.bar(sum(len(v) for _, v in todo.values()), desc)
    batch_x: list[np.ndarray] = []
    batch_k: list[Key] = []

    def flush() -> None:
        if batch_x:
            done = dict(zip(batch_k, run(np.concatenate(batch_x))))
            if store:
                store.put_many(done)
            found.update(done)
            bar.update(len(done))
            batch_x.clear()
            batch_k.clear()

    class _Shim:  # _prepare_image reads only `.spec`
        def __init__(self, spec: BackboneSpec) -> None:
            self.spec = spec

    shim = _Shim(spec)
    workers = max(1, min(4, os.cpu_count() or 1))
    jobs = [(s, v, shim, augmentation) for s, v in todo.values()]
    with ThreadPoolExecutor(workers) as pool:
        for (sample, wanted), tensors in zip(todo.values(), ordered_map(pool, jobs, _prepare_image, 4 * batch_size)):
            for v, x in zip(wanted, tensors):
                batch_x.append(x)
                batch_k.append((sample.content, tag_of(v), v))
            if len(batch_x) >= batch_size:
                flush()
        flush()
    bar.close()
    if not samples:
        return np.zeros((0, 1 + views, 0, 0, 0), np.float16)
    return np.stack([np.stack([found[k] for k in row]) for row in keys])
