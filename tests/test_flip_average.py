"""Test-time flip averaging: a CV candidate scored on cached mirrored embeddings, and inside the
exported graph the batch and its mirror run together with each image's probabilities averaged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import make_image_folder
from edgemaker import AugmentationOptions, ImageClassifier, ImageClassifierOptions, load_image_folder
from edgemaker.export.runtime import ExportedModel
from edgemaker.tasks.options import HParams


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("d") / "data", per_class=10)
    splits = load_image_folder(root)
    options = ImageClassifierOptions(augmentation=AugmentationOptions(views=1), cache_dir=root.parent / "cache",
                                     hparams=HParams(cv_folds=3, epochs=15, flip_average="on"))
    return splits, ImageClassifier.create(splits.train, splits.val, options)


def test_flip_averaging_is_scored_by_cv_and_the_float_model_averages(flipped):
    splits, clf = flipped
    sel = clf.head_selection
    assert clf.flip_average and sel.chosen["flip_average"] is True
    assert all(c.settings["flip_average"] for c in sel.candidates)  # "on": only flip-averaged candidates
    ev = clf.evaluate(splits.test)
    direct = clf.head.predict_proba(clf.embed(splits.test).vectors)
    assert not np.allclose(ev.probabilities, direct, atol=1e-3)  # the mirror changes the answer


def _runtime_files(clf, tmp_path, runtime):
    from edgemaker.export.exporters import exporter_for

    exporter = exporter_for(runtime)
    model = clf.float_model()
    both = exporter.convert(model, True, tmp_path / f"flip{exporter.suffix}")
    single = exporter.convert(dataclasses.replace(model, flip_average=False), True, tmp_path / f"plain{exporter.suffix}")
    return ExportedModel(both) if runtime == "onnx" else exporter.load(both), \
        ExportedModel(single) if runtime == "onnx" else exporter.load(single)


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_the_exported_graph_averages_the_image_and_its_mirror(flipped, tmp_path, runtime):
    if runtime == "tflite":
        pytest.importorskip("litert_torch")
    splits, clf = flipped
    both, single = _runtime_files(clf, tmp_path, runtime)
    assert "flip_average" in both.metadata and "flip_average" not in single.metadata
    paths = [s.path for s in splits.test]
    # The file agrees with the float model (which averages the cached embeddings of both views).
    np.testing.assert_allclose(both.predict_files(paths), clf.evaluate(splits.test).probabilities, atol=2e-3)
    # An asymmetric input: the graph's answer is the mean of the plain graph's answers on it and its mirror.
    rng = np.random.default_rng(0)
    size = both.input["size"]
    x = np.zeros((1, size, size, 3), np.uint8)
    x[:, :, : size // 3] = 255
    x[:, :, size // 3 :] = rng.integers(0, 60, (1, size, size - size // 3, 3))
    direct, mirrored = single.predict_proba(x), single.predict_proba(x[:, :, ::-1].copy())
    assert np.abs(direct - mirrored).max() > 1e-3  # the two views really differ
    np.testing.assert_allclose(both.predict_proba(x), (direct + mirrored) / 2, atol=2e-4 if runtime == "onnx" else 2e-3)


def test_the_int8_onnx_file_keeps_the_flip_averaging(flipped, tmp_path):
    from edgemaker import Quantization

    splits, clf = flipped
    int8 = ExportedModel(clf.export(tmp_path, Quantization.for_int8([s.path for s in splits.train])))
    assert "flip_average" in int8.metadata and int8.metadata["quantization"] == "int8"
    paths = [s.path for s in splits.test]
    agree = (int8.predict_files(paths).argmax(1) == clf.evaluate(splits.test).probabilities.argmax(1)).mean()
    assert agree >= 0.9


def _views(seed: int, n_per_class: int, mirror_noise: float):
    """Two classes in 32 noisy features; the mirror is another noisy look at the same image (noise
    `mirror_noise`), or an unrelated one (mirror_noise None)."""
    from edgemaker.data.validate import Sample
    from edgemaker.features.extract import Embeddings

    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b"], n_per_class)
    centre = np.where(labels[:, None] == "a", 0.35, -0.35) * np.ones((1, 32))
    x = centre + rng.normal(0, 1, centre.shape)
    m = centre + rng.normal(0, 1, centre.shape) if mirror_noise else rng.normal(0, 1, centre.shape)
    samples = [Sample(path=None, label=str(c), content=f"{seed}-{i}") for i, c in enumerate(labels)]
    ids = np.arange(len(labels))
    as_emb = lambda v: Embeddings(v.astype(np.float32), ids, np.zeros_like(ids), len(labels))  # noqa: E731
    return samples, as_emb(x), as_emb(m)


@pytest.mark.parametrize("useful", [True, False])
def test_auto_keeps_flip_averaging_only_where_cv_says_it_wins(tmp_path, useful):
    from edgemaker.tasks.classifier import choose_head
    from edgemaker.tasks.options import ClassifierOptions

    train, x_train, m_train = _views(0, 60, 1.0 if useful else None)
    val, x_val, m_val = _views(1, 20, 1.0 if useful else None)
    options = ClassifierOptions(hparams=HParams(cv_folds=5, epochs=20, flip_average="auto", head="probe"),
                                cache_dir=tmp_path)
    _, sel = choose_head(options, train, val, x_train, x_val, (m_train, m_val))
    by_flip = {flip: max(c.result.mean for c in sel.candidates if c.settings["flip_average"] == flip)
               for flip in (False, True)}
    assert sel.chosen["flip_average"] is useful
    assert (by_flip[True] > by_flip[False]) is useful
