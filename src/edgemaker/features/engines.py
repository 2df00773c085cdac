"""Where validation and embedding extraction run: threads in this process (`local`, the default) or
a Ray cluster (`ray`, the optional extra; features/ray_engine.py).

Both run the same preparation code, so verdicts and embeddings are the same; this process stays
the one writer of the SQLite cache, so a cluster run and a laptop run share it and a killed run
resumes. Splitting, head training, export and reports always run here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..data.folders import FoundFile
from ..data.validate import Sample, Verdict, local_verdicts
from ..tasks.options import EngineOptions
from .cache import FeatureCache
from .extract import Embeddings, extract_embeddings


class LocalEngine:
    """Threads in this process: decoding overlapped with one ONNX Runtime session."""

    name = "local"

    def verdicts(self, files: list[FoundFile], modality: str, cache: FeatureCache | None,
                 tick: Callable[[int], None] = lambda n: None) -> list[Verdict]:
        return local_verdicts(files, modality, cache, tick)

    def extract(self, samples: Sequence[Sample], backbone, cache, views: int = 0, augmentation=None,
                progress=None, desc: str = "extract", silence=None) -> Embeddings:
        return extract_embeddings(samples, backbone, cache, views, augmentation, progress, desc=desc, silence=silence)


_RAY_ENGINES: dict[tuple, object] = {}


def engine_for(options: EngineOptions | None):
    """The engine `options` ask for; one Ray connection per process, reused across runs."""
    if options is None or options.kind == "local":
        return LocalEngine()
    key = (options.address, options.actors, options.cpus_per_actor)
    if key not in _RAY_ENGINES:
        from .ray_engine import RayEngine, default_init_kwargs

        _RAY_ENGINES[key] = RayEngine(options, default_init_kwargs())
    return _RAY_ENGINES[key]
