"""Validation and extraction as Ray Data pipelines (the `ray` extra): on a local Ray or a cluster.

files -> read bytes + hash + decode check (tasks)                          -> verdicts back here
samples -> actor pool: read bytes + verify hash + decode/prepare views, embed (one ONNX Runtime
session per actor, threads = its CPUs) -> embeddings streamed back -> cache (written here)

Each actor prepares its own samples, two calls at a time: one decodes while the other runs the
session (one run at a time), as the local engine overlaps its decode threads with inference.
Measured on caltech-dev10 with one 2-CPU actor, that gives 150-160 images/s steady against
130-140 for preparation in separate tasks (decoded images through the object store, and tasks
declared CPU-free so they can overlap inference, which lies to the scheduler).

Workers run the very functions the local engine runs (data/validate.py, features/extract.py,
data/audio.py), so verdicts and embeddings match it. The driver holds one small record per file
and the embeddings; file bytes and images exist only in the workers.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..data.folders import FoundFile
from ..data.validate import Sample, Verdict, cacheable, file_verdict
from ..errors import DataError, EdgemakerError
from ..tasks.options import EngineOptions
from .cache import FeatureCache, Key

log = logging.getLogger(__name__)

RAY_REQUIREMENT = "ray[data]==2.60.0"
STORE_EVERY = 16  # finished (sample, view) embeddings per cache transaction
ACTOR_START_TIMEOUT_S = 600  # a cluster may add nodes for the pool meanwhile


def import_ray():
    """Ray Data, or a one-line error saying what to install."""
    try:
        import ray
        import ray.data  # pandas and pyarrow come with the [data] extra
    except ImportError as exc:
        raise EdgemakerError(f"--engine ray needs Ray Data ({exc.name or 'ray'} is missing); install it with "
                             f"`pip install 'edgemaker[ray]'` (or `pip install '{RAY_REQUIREMENT}'`)") from None
    return ray


# ---- functions that run in Ray workers ------------------------------------------------------------

def _verdict_batch(batch: dict, modality: str) -> dict:
    """Hash + decode check of a batch of files (one read each)."""
    out = [file_verdict(p, modality) for p in batch["path"]]
    column = lambda k: np.array([v[k] or "" for v in out])  # "" for None: the columns stay text
    return {"i": batch["i"], "content": column(0), "problem": column(1), "info": column(2)}


@dataclass(frozen=True)
class _Prep:
    """What preparing a sample needs besides the sample: shipped once per actor, not per row."""

    spec: object  # BackboneSpec
    augmentation: object
    silence: object


def _windows(sample: Sample, views: list[int], prep: _Prep) -> list[tuple[int, list[np.ndarray]]]:
    """(view, windows) of one sample, exactly as the local engine prepares them."""
    from .extract import prepare_image, read_verified, view_seed

    data = read_verified(sample)
    if prep.spec.image is not None:
        return [(v, [x[0]]) for v, x in zip(views, prepare_image(data, sample, views, prep.spec, prep.augmentation))]
    from ..data.audio import AudioDecodeError, clip_windows

    out = []
    for v in views:
        try:
            windows = list(clip_windows(data, prep.spec.audio, prep.silence, prep.augmentation if v > 0 else None,
                                        view_seed(sample.content, v)))
        except AudioDecodeError as exc:
            raise DataError(f"{sample.path}: {exc}") from None
        if not windows:
            raise DataError(f"no audio windows for {sample.content[:12]}…; the clip may be empty")
        out.append((v, windows))
    return out


def _prepare_batch(batch: dict, prep: _Prep) -> dict:
    """Samples -> one row per window: (i, view, w of n, x), or one row with the sample's error."""
    spec = prep.spec
    shape = (spec.image.size, spec.image.size, 3) if spec.image else (spec.audio.window_samples,)
    dtype = np.uint8 if spec.image else np.float32
    rows: dict[str, list] = {k: [] for k in ("i", "view", "w", "n", "error", "x")}
    for i, path, content, views in zip(batch["i"], batch["path"], batch["content"], batch["views"]):
        sample = Sample(path, "", content)
        try:
            prepared = _windows(sample, [int(v) for v in views.split(",")], prep)
        except DataError as exc:
            prepared, error = [(-1, [np.zeros(shape, dtype)])], str(exc)
        else:
            error = ""
        for v, windows in prepared:
            for w, x in enumerate(windows):
                for k, val in zip(rows, (i, v, w, len(windows), error, x)):
                    rows[k].append(val)
    return {k: (np.stack(v) if k == "x" else np.asarray(v)) for k, v in rows.items()}


class _Embedder:
    """One actor: one ONNX Runtime session with as many threads as the actor has CPUs, fed by the
    actor's own preparation (two concurrent calls: one decodes while the other runs the session)."""

    def __init__(self, spec, model: bytes, threads: int, version: str, prep: _Prep) -> None:
        import threading

        import ray

        if not isinstance(model, bytes):  # an ObjectRef: the graph is stored once in the cluster
            model = ray.get(model)
        if version != __version__:
            raise EdgemakerError(f"this Ray node runs edgemaker {__version__}, the driver {version}; "
                                 "install the same version on every node")
        from ..backbones.runtime import Backbone

        self.backbone = Backbone.from_onnx(spec, model, threads)
        self.node = ray.get_runtime_context().get_node_id()
        self.prep = prep
        self.session_lock = threading.Lock()  # the session's threads fill the CPUs: one run at a time

    def __call__(self, samples: dict) -> dict:
        batch = _prepare_batch(samples, self.prep)
        ok = batch["error"] == ""
        dim = self.backbone.spec.feature_dim
        vec = np.zeros((len(ok), dim), np.float32)
        if ok.any():
            x = np.ascontiguousarray(batch["x"][ok])
            with self.session_lock:
                vec[ok] = self.backbone.embed(x)
        out = {k: batch[k] for k in ("i", "view", "w", "n", "error")}
        out["vec"] = vec
        out["node"] = np.full(len(ok), self.node)
        return out


# ---- the engine, on the driver ---------------------------------------------------------------------

class RayEngine:
    """Validation and extraction on Ray; `options.address` None starts a Ray instance for this process."""

    name = "ray"

    def __init__(self, options: EngineOptions, init_kwargs: dict | None = None) -> None:
        self.options = options
        self.init_kwargs = init_kwargs or {}
        self.ray = import_ray()
        self.last_nodes: dict[str, int] = {}  # node id -> windows it embedded, in the last extraction
        self.last_timing: dict[str, float] = {}  # its total, start-up (to the first batch) and steady rate

    def _connect(self):
        ray = self.ray
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
                      **self.init_kwargs}
            try:
                if self.options.address:
                    check_reachable(self.options.address)
                    ray.init(address=self.options.address, **kwargs)
                else:
                    if not os.environ.get("RAY_ADDRESS"):  # else ray.init joins that cluster: no system config
                        kwargs = {"_system_config": {"num_workers_soft_limit": local_worker_limit(kwargs)}, **kwargs}
                    ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.options.address or "a local Ray instance"
                raise EdgemakerError(f"--ray-address {where}: cannot connect to Ray "
                                     f"({str(exc).splitlines()[0]}); check the address, that the cluster runs (`ray start "
                                     "--head`) and, for a token-protected cluster, RAY_AUTH_TOKEN") from None
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        # Every actor up before the first batch goes out: the first one ready would otherwise take all
        # of a small job (each takes up to four batches at once), and a cluster that cannot place
        # the pool says so instead of waiting forever.
        ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
        return ray

    def node_cpus(self) -> list[int]:
        return [int(n["Resources"].get("CPU", 0)) for n in self._connect().nodes() if n["Alive"]]

    def cluster_cpus(self) -> int:
        return max(1, sum(self.node_cpus()))

    def layout(self) -> tuple[int, int]:
        """(actors, CPUs each): an actor never asks for more CPUs than the largest node has; by
        default as many actors as fit on the nodes."""
        nodes = self.node_cpus() or [1]
        cpus = max(1, min(self.options.cpus_per_actor, max(nodes)))
        return self.options.actors or max(1, sum(n // cpus for n in nodes)), cpus

    def _items(self, columns: dict[str, list], per_block: int, multiple: int = 1):
        """A dataset of these columns, as Arrow blocks: a few compact buffers per block instead of a
        Python dict per row (100k files: tens of MB of the driver's memory saved while it starts).
        Blocks hold a multiple of `multiple` rows, so that batches of that size come out whole.
        `from_blocks` takes their sizes here; `from_arrow` would run a task per block for them,
        tasks that wait for CPUs a finishing job's actors still hold (measured: up to 2 s)."""
        import pyarrow as pa

        ray = self._connect()
        n = len(next(iter(columns.values())))
        step = -(-n // max(1, min(-(-n // per_block), 8 * self.cluster_cpus() + 8)))
        step = -(-step // multiple) * multiple
        return ray.data.from_blocks([pa.table({k: v[a:a + step] for k, v in columns.items()}) for a in range(0, n, step)])

    def verdicts(self, files: list[FoundFile], modality: str, cache: FeatureCache | None,
                 tick: Callable[[int], None] = lambda n: None) -> list[Verdict]:
        """Hash + decode check of every file in Ray tasks; verdicts land in the cache from here."""
        from ..data.validate import MEDIA_KIND

        if not files:
            return []
        ds = self._items({"i": list(range(len(files))), "path": [str(f.path) for f in files]}, 256)
        ds = ds.map_batches(_verdict_batch, fn_kwargs={"modality": modality}, batch_size=32, num_cpus=1)
        out: list[Verdict | None] = [None] * len(files)
        pending: dict[str, tuple] = {}
        for batch in self._stream(ds):
            for i, content, problem, info in zip(batch["i"], batch["content"], batch["problem"], batch["info"]):
                content, problem, info = str(content) or None, str(problem) or None, str(info) or None
                out[int(i)] = (content, problem, info)
                if content and cacheable(problem):
                    pending[content] = (problem, info)
            tick(len(batch["i"]))
            if cache and len(pending) >= 1000:
                cache.put_media(pending, MEDIA_KIND[modality])
                pending = {}
        if cache and pending:
            cache.put_media(pending, MEDIA_KIND[modality])
        return out  # type: ignore[return-value]

    def compute(self, todo: list[tuple[Sample, list[int]]], backbone, augmentation, silence,
                key_of: Callable[[Sample, int], Key], store: Callable[[dict], None], batch_size: int = 16) -> str:
        """Embed every (sample, views) in `todo`; `store` gets finished embeddings in batches, as they come.
        Returns where the work ran, in words."""
        from ..backbones.runtime import export_backbone_onnx

        ray = self._connect()
        start = time.perf_counter()
        actors, cpus = self.layout()
        model = (backbone.onnx_path or export_backbone_onnx(backbone.spec)).read_bytes()
        rows = {"i": list(range(len(todo))), "path": [str(s.path) for s, _ in todo], "content": [s.content for s, _ in todo],
                "views": [",".join(map(str, v)) for _, v in todo]}
        # Samples per call: 16 images of 224 px (more for smaller images, so that Ray's per-call cost,
        # a few ms, stays small against the work) or 4 sound clips (several windows each).
        side = backbone.spec.image.size if backbone.spec.image else 224
        scale = max(1, min(64, (224 * 224) // (side * side)))
        per_call = batch_size * scale if backbone.spec.image else max(1, batch_size // 4)
        per_call = max(1, min(per_call, -(-len(todo) // (4 * actors))))  # a few samples: every actor gets some
        ds = self._items(rows, per_call, multiple=per_call)
        del rows  # in the object store now
        prep = _Prep(backbone.spec, augmentation, silence)
        with warnings.catch_warnings():  # max_restarts goes through Ray's deprecated **ray_remote_args
            warnings.simplefilter("ignore")
            ds = ds.map_batches(_Embedder, fn_constructor_kwargs={"spec": backbone.spec, "model": ray.put(model),
                                                                  "threads": cpus, "version": __version__, "prep": prep},
                                batch_size=per_call, num_cpus=cpus,
                                compute=ray.data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=2,
                                                                   enable_true_multi_threading=True),
                                max_restarts=0)  # a lost actor fails the run; the cache keeps what was done
        partial: dict[tuple[int, int], dict[int, np.ndarray]] = {}
        done: dict[Key, np.ndarray] = {}
        self.last_nodes = {}
        first = None
        for batch in self._stream(ds):
            if first is None:  # actors started, graph loaded: the job's fixed cost ends here
                first = (time.perf_counter(), len(batch["i"]))
            for i, v, w, n, error, vec, node in zip(batch["i"], batch["view"], batch["w"], batch["n"],
                                                    batch["error"], batch["vec"], batch["node"]):
                if error:
                    raise DataError(str(error))
                self.last_nodes[str(node)] = self.last_nodes.get(str(node), 0) + 1
                got = partial.setdefault((int(i), int(v)), {})
                got[int(w)] = vec
                if len(got) == int(n):
                    del partial[(int(i), int(v))]
                    done[key_of(todo[int(i)][0], int(v))] = np.stack([got[k] for k in range(int(n))])
            if len(done) >= STORE_EVERY:
                store(done)
                done = {}
        if done:
            store(done)
        if partial:
            raise EdgemakerError(f"ray engine: {len(partial)} embeddings came back incomplete; run again")
        end, windows = time.perf_counter(), sum(self.last_nodes.values())
        self.last_timing = {"windows": windows, "total_s": end - start, "startup_s": (first[0] - start) if first else 0.0,
                            "steady_windows_s": (windows - first[1]) / max(end - first[0], 1e-9) if first else 0.0}
        return (f"{sum(self.last_nodes.values())} windows embedded by {actors} Ray actors ({cpus} CPUs each) "
                f"on {len(self.last_nodes)} nodes")

    def _stream(self, ds):
        """Batches as the cluster finishes them; a worker's failure as one line."""
        try:
            with warnings.catch_warnings():  # Ray Data's tuning hints (e.g. "fewer inputs than tasks")
                warnings.simplefilter("ignore", UserWarning)
                yield from ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
        except EdgemakerError:
            raise
        except Exception as exc:
            cause = exc
            while cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, EdgemakerError):
                raise type(cause)(str(cause)) from None
            raise EdgemakerError(f"ray engine failed: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}") from None


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A `host:port` (or `ray://host:port`) address that accepts no connection is one error line now:
    ray.init retries an unreachable cluster 20 times, each try waiting for its own timeout (measured
    here: still waiting after 4 minutes). Other forms ("auto") are left to Ray."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise EdgemakerError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); check the "
                             "address and that the cluster runs (`ray start --head` prints it)") from None


def local_worker_limit(init_kwargs: dict) -> int:
    """Idle workers a local Ray instance keeps. Ray keeps as many as the node has CPUs, counting
    the workers that hold actors, and Ray Data starts three actors of its own: on a 2-CPU laptop
    every stage then started its workers anew (a second each, measured: validation 2.0 s instead
    of 0.4). Four more, as a node with more CPUs than actors has anyway."""
    return int(init_kwargs.get("num_cpus") or os.cpu_count() or 1) + 4


def default_init_kwargs() -> dict:
    """A local Ray instance's size from the environment (tests and benches keep it small)."""
    kwargs: dict = {}
    if os.environ.get("EDGEMAKER_RAY_CPUS"):
        kwargs["num_cpus"] = int(os.environ["EDGEMAKER_RAY_CPUS"])
    if os.environ.get("EDGEMAKER_RAY_STORE_MB"):
        kwargs["object_store_memory"] = int(os.environ["EDGEMAKER_RAY_STORE_MB"]) * 2**20
    if os.environ.get("EDGEMAKER_RAY_TMP"):
        kwargs["_temp_dir"] = os.environ["EDGEMAKER_RAY_TMP"]
    return kwargs
