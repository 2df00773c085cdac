"""Activations at a fine-tuning cut (the input of the first unfrozen block), cached per sample and view.

Fine-tuning the last K blocks only needs what enters them (per image, or per window of a sound); computing that once and storing it
(float16, content-addressed like the embeddings) lets every epoch run just the last K blocks. The
rows live in their own table of the features SQLite file, one transaction per batch, so a killed
run resumes from what it had finished.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..backbones.runtime import GRAPH_VERSION, ONNX_OPSET, make_session
from ..backbones.spec import BackboneSpec
from ..data.validate import Sample
from ..paths import cache_dir
from ..progress import Progress
from .cache import Key, connect
from .extract import Embeddings, extract_rows

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
    """ONNX graph backbone input -> activation entering block `cut`, exported once per weights and cut.

    The input is the backbone's own (uint8 NHWC image, or a float waveform window whose log-mel is
    computed in the graph); `build_prefix(spec, cut)` returns the torch module from there (images:
    from float NCHW, the uint8 step is added here)."""
    from ..backbones.runtime import input_name, with_graph_input

    target = (root or cache_dir()) / "backbones" / f"{spec.cache_id}-cut{cut}-g{GRAPH_VERSION}.onnx"
    if target.is_file():
        return target
    import torch

    module, dummy = with_graph_input(build_prefix(spec, cut), spec)
    name = input_name(spec)
    with atomic_path(target, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (dummy,), str(tmp), input_names=[name], output_names=["activation"],
                          dynamic_axes={name: {0: "batch"}, "activation": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)
    return target


class PrefixRunner:
    """Runs the prefix graph in ONNX Runtime; `calls` counts inputs (images or windows) computed."""

    def __init__(self, graph: Path, threads: int | None) -> None:
        self._session = make_session(graph, threads)
        self._input = self._session.get_inputs()[0].name
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += len(batch)
        return self._session.run(["activation"], {self._input: np.ascontiguousarray(batch)})[0].astype(np.float16)


def extract_activations(samples: Sequence[Sample], views: int, augmentation, spec: BackboneSpec, tag_of: Callable,
                        run: PrefixRunner, store: ActivationStore | None, progress: Progress | None = None,
                        silence=None, desc: str = "activations") -> Embeddings:
    """Rows (windows x views) of float16 (C, H, W) activations, owner/view as for embeddings: view 0
    clean, views 1.. augmented exactly as the embeddings' (same seeds). `tag_of(view)` gives a
    view's cache tag; cached rows are reused, missing ones computed and committed batch by batch."""
    return extract_rows(samples, spec, tag_of, run, store, views, augmentation, (0, 0, 0), progress,
                        desc=desc, silence=silence)
