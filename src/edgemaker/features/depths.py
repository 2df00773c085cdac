"""Embeddings of every depth of an EfficientNet-Lite or a MobileNetV1 at once: one forward pass, one cache row per depth.

Why: a budget search tries each truncation depth; the pooled output after block k is a by-product of
computing block k+1, so one pass through the whole network (an ONNX graph with every pooled output
concatenated) gives every depth for the price of the full backbone. Each depth's rows are stored
under that truncated backbone's own cache key (its spec's cache_id: name with the depth, input
size, weights), so `Classifier.create` for `efficientnet_lite0_k5` at that size finds them cached.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..backbones import get_spec
from ..backbones.runtime import GRAPH_VERSION, ONNX_OPSET, OUTPUT_NAME, INPUT_NAME, with_uint8_input, make_session
from ..backbones.spec import BackboneSpec
from ..backbones.truncated import trunk, all_depths_module, depth_dims, truncated_spec
from ..backbones.weights import resolve_weights
from ..data.validate import Sample
from ..paths import cache_dir
from ..progress import Progress, SilentProgress
from .cache import FeatureCache
from .extract import cache_tag, default_silence, extract_embeddings, silence_tag


class _Holder:
    def __init__(self, spec: BackboneSpec) -> None:
        self.spec = spec


class AllDepthsBackbone:
    """`embed(uint8 batch) -> (N, sum of every depth's width + the full head's)`, one ONNX session."""

    def __init__(self, variant: str, size: int, threads: int | None = None, root: Path | None = None) -> None:
        self.variant, self.size = variant, size
        if variant.startswith("mobilenet_v1_"):  # every cut of a shipped MobileNetV1, the whole one last
            from ..backbones import mobilenet_v1

            self.full = get_spec(variant).with_image_size(size)
            self.specs = mobilenet_v1.cut_specs(variant, size)
            self.dims = [s.feature_dim for s in self.specs]
        else:
            self.full = get_spec(f"efficientnet_{variant}").with_image_size(size)
            self.dims = depth_dims(variant) + [self.full.feature_dim]
            self.specs = [truncated_spec(variant, k, size) for k in range(1, len(self.dims))] + [self.full]
        # A spec for the concatenated vector: never cached itself (its rows are split per depth).
        self.spec = dataclasses.replace(self.full, name=f"{self.full.name}_alldepths", feature_dim=sum(self.dims))
        self.graph = 2  # bump when the all-depths graph changes (its file name carries it)
        self.onnx_path = self._export(root)
        self._session = make_session(self.onnx_path, threads)

    def _export(self, root: Path | None) -> Path:
        target = (root or cache_dir()) / "backbones" / f"{self.spec.cache_id}-g{GRAPH_VERSION}.{self.graph}.onnx"
        if target.is_file():
            return target
        import torch

        assert self.full.image is not None
        weights = resolve_weights(self.full.weights)
        if self.variant.startswith("mobilenet_v1_"):
            from ..backbones import mobilenet_v1

            body = mobilenet_v1.all_depths_module(self.variant, weights)
        else:
            body = all_depths_module(trunk(self.variant, self.size, weights))
        module = with_uint8_input(body, self.full.image)
        dummy = torch.zeros(1, self.size, self.size, 3, dtype=torch.uint8)
        with atomic_path(target, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=ONNX_OPSET, dynamo=False)
        return target

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] == 0:
            return np.zeros((0, self.spec.feature_dim), np.float32)
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch)})[0].astype(np.float32)

    def split(self, vectors: np.ndarray) -> list[np.ndarray]:
        """The concatenated rows -> one array per depth (the last: the full backbone)."""
        return np.split(vectors, np.cumsum(self.dims)[:-1], axis=1)


class SoundAllDepthsBackbone:
    """A cut sound trunk's family (backbones/sound_trunks.py): waveform windows -> every depth's
    pooled features concatenated (the whole network's last), one ONNX session with the front end."""

    graph = 1  # bump when the all-depths graph changes (its file name carries it)

    def __init__(self, family, threads: int | None = None, root: Path | None = None) -> None:
        self.family, self.specs, self.dims = family, list(family.specs), family.dims
        whole = self.specs[-1]
        self.spec = dataclasses.replace(whole, name=f"{whole.name}_alldepths", feature_dim=sum(self.dims))
        target = (root or cache_dir()) / "backbones" / f"{self.spec.cache_id}-g{GRAPH_VERSION}.{self.graph}.onnx"
        if not target.is_file():
            import torch

            from ..backbones.sound_trunks import all_depths_module

            assert whole.audio is not None
            module = all_depths_module(family, resolve_weights(whole.weights))
            with atomic_path(target, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (torch.zeros(1, whole.audio.window_samples),), str(tmp),
                                  input_names=["waveform"], output_names=[OUTPUT_NAME],
                                  dynamic_axes={"waveform": {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                                  opset_version=ONNX_OPSET, dynamo=False)
        self.onnx_path = target
        self._session = make_session(target, threads)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] == 0:
            return np.zeros((0, self.spec.feature_dim), np.float32)
        return self._session.run([OUTPUT_NAME], {"waveform": np.ascontiguousarray(batch, np.float32)})[0]

    split = AllDepthsBackbone.split


def extract_all_depths(samples: Sequence[Sample], backbone: AllDepthsBackbone, cache: FeatureCache, views: int = 0,
                       augmentation=None, progress: Progress | None = None, desc: str = "extract all depths",
                       silence=None) -> int:
    """Fill `cache` with every depth's embedding of every sample and view; returns the samples computed
    (those missing any depth or view; the rest were already cached). A sound's rows are its windows,
    cached under the tag its own backbone's extraction uses (with `silence`, as the run's options)."""
    progress = progress or SilentProgress()
    silence = default_silence(backbone.spec, silence)
    extra = silence_tag(silence)
    tags = [[cache_tag(_Holder(spec), augmentation, v, extra) for v in range(1 + views)] for spec in backbone.specs]
    missing: set[str] = set()
    for spec, per_view in zip(backbone.specs, tags):
        keys = {(s.content, per_view[v], v) for s in samples for v in range(1 + views)}
        found = cache.get_many(keys, spec.feature_dim)
        missing |= {k[0] for k in keys - found.keys()}
    todo = list({s.content: s for s in samples if s.content in missing}.values())
    if not todo:
        return 0
    chunk = 64  # commit per chunk, so a killed run resumes from what it had finished
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        emb = extract_embeddings(part, backbone, None, views, augmentation if views else None, progress,
                                 desc=desc, silence=silence)
        per_depth = backbone.split(emb.vectors)
        order = np.lexsort((emb.view, emb.owner))  # rows of one (sample, view) together, windows in order
        owner, view = emb.owner[order], emb.view[order]
        bounds = np.flatnonzero(np.diff(owner * (views + 1) + view)) + 1
        groups = np.split(order, bounds)
        rows = {}
        for vectors, per_view in zip(per_depth, tags):
            for g in groups:
                v = int(emb.view[g[0]])
                rows[(part[emb.owner[g[0]]].content, per_view[v], v)] = vectors[g]
        cache.put_many(rows)
    return len(todo)
