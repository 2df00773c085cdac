"""features/ray_job.py without Ray: every split's missing embeddings go to ONE engine.compute call,
a sample shared by two parts is embedded once with the union of its views, the cache then answers
the per-split extractions with the local engine's vectors, and a second run computes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_image_folder

from edgemaker.backbones.runtime import Backbone
from edgemaker.backbones.truncated import truncated_spec
from edgemaker.data.images import Augmentation
from edgemaker.data.validate import validate_folder
from edgemaker.features.cache import FeatureCache
from edgemaker.features.extract import _prepare_image, extract_embeddings
from edgemaker.features.ray_job import embed_all


class CountingEngine:
    """An engine that embeds here, like a Ray actor would, and records what it was asked."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, list[int]]]] = []

    def compute(self, todo, backbone, augmentation, silence, key_of, store, batch_size: int = 16) -> str:
        self.calls.append([(s.content, list(v)) for s, v in todo])
        for sample, views in todo:
            xs = _prepare_image(sample, views, backbone, augmentation)
            store({key_of(sample, v): backbone.embed(x) for v, x in zip(views, xs)})
        return f"{sum(len(v) for _, v in todo)} views"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rayjob")
    samples = validate_folder(make_image_folder(root / "data", per_class=4)).samples
    return root, samples, Backbone(truncated_spec("lite0", 3, 32), 1)


def test_one_compute_for_every_split_then_all_cached(setup):
    root, samples, backbone = setup
    aug = Augmentation()
    train, val, test = samples[:8], samples[8:10], samples[10:]
    parts = [(train, 2), (val, 0), (test, 0), (train[:2], 0)]  # train[:2] again: embedded once
    engine = CountingEngine()
    with FeatureCache(root / "job.sqlite") as cache:
        assert embed_all(parts, backbone, cache, aug, None, engine) == 8 * 3 + 4
        assert len(engine.calls) == 1
        asked = dict(engine.calls[0])
        assert len(asked) == len(samples) and all(asked[s.content] == [0, 1, 2] for s in train)
        assert all(asked[s.content] == [0] for s in val + test)
        with FeatureCache(root / "local.sqlite") as local_cache:
            for part, views in parts[:3]:
                got = extract_embeddings(part, backbone, cache, views, aug if views else None, engine=engine)
                want = extract_embeddings(part, backbone, local_cache, views, aug if views else None)
                assert np.abs(got.vectors - want.vectors).max() <= 1e-5
                assert (got.owner == want.owner).all() and (got.view == want.view).all()
        assert len(engine.calls) == 1  # the per-split extractions found everything in the cache
        assert embed_all(parts, backbone, cache, aug, None, engine) == 0 and len(engine.calls) == 1


def test_views_without_augmentation_are_refused(setup):
    root, samples, backbone = setup
    with FeatureCache(root / "refused.sqlite") as cache, pytest.raises(ValueError, match="augmentation"):
        embed_all([(samples, 1)], backbone, cache, None, None, CountingEngine())


def test_embed_run_is_one_job_for_train_val_and_test(setup, monkeypatch):
    """pipeline.py's hook: one compute call for a run's three splits (train with its views), then
    nothing left for create()'s extractions."""
    from edgemaker.data.splits import Splits
    from edgemaker.features.ray_job import embed_run
    from edgemaker.tasks.classifier import ImageClassifier
    from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, EngineOptions, ModelOptions

    root, samples, backbone = setup
    engine = CountingEngine()
    monkeypatch.setattr("edgemaker.features.engines.engine_for", lambda options: engine)
    options = ClassifierOptions(cache_dir=root / "run", threads=1, engine=EngineOptions("ray"),
                                model=ModelOptions(backbone=backbone.spec.name, input_size=32),
                                augmentation=AugmentationOptions(views=1))
    part = lambda *rest: [s for i, s in enumerate(samples) if i % 4 in rest]  # of each class's 4: 2 / 1 / 1
    splits = Splits(part(0, 1), part(2), part(3), [], "")
    with FeatureCache(root / "run.sqlite") as cache:
        assert embed_run(ImageClassifier, splits, options, cache) > 0
        assert len(engine.calls) == 1
        asked = dict(engine.calls[0])
        assert len(asked) == len(samples) and all(asked[s.content] == [0, 1] for s in splits.train)
        assert all(asked[s.content] == [0] for s in splits.val + splits.test)
        clf = ImageClassifier.create(splits.train, splits.val, options, cache=cache)
        clf.evaluate(splits.test)
        assert len(engine.calls) == 1  # create() and evaluate() found every embedding in the cache
