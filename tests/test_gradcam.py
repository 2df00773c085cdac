"""Grad-CAM finds the cue: a class told apart only by a small pattern in one corner lights up that
corner, and the heat follows the pattern when it moves to the opposite corner."""

from __future__ import annotations

import numpy as np
import pytest

from edgemaker.evaluate.gradcam import explain_misclassified, gradcam, heat_colours, overlay, quadrant_mass

SIZE = 224
PATCH = 72


def _scene(kind: str, corner: str, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour background (the same for both classes) with a stripes or checks patch."""
    coarse = rng.integers(40, 215, (7, 7, 3)).astype(np.float32)
    bg = np.kron(coarse, np.ones((32, 32, 1), np.float32)) + rng.normal(0, 10, (SIZE, SIZE, 3))
    yy, xx = np.mgrid[0:PATCH, 0:PATCH]
    field = np.sin(xx * 0.6) if kind == "stripes" else np.sign(np.sin(xx * 0.5) * np.sin(yy * 0.5))
    patch = (127 + 120 * field)[..., None].repeat(3, axis=2)
    far = SIZE - PATCH - 8
    y0, x0 = {"top_left": (8, 8), "top_right": (8, far), "bottom_left": (far, 8), "bottom_right": (far, far)}[corner]
    bg[y0:y0 + PATCH, x0:x0 + PATCH] = patch
    return np.clip(bg, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained():
    """EfficientNet-Lite0's torch module and a head fitted on its features of corner-patch scenes."""
    import torch

    from edgemaker.backbones import get_spec
    from edgemaker.evaluate.gradcam import torch_module
    from edgemaker.heads.softmax import SoftmaxHead

    spec = get_spec("efficientnet_lite0")
    module = torch_module(spec)
    rng = np.random.default_rng(0)
    labels = ["stripes", "checks"] * 12
    corners = ["top_left", "top_right", "bottom_left", "bottom_right"]  # the pattern is the cue, not the place
    x = np.stack([_scene(k, corners[i // 2 % 4], rng) for i, k in enumerate(labels)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as gradcam() does: faster on a busy machine
    try:
        with torch.no_grad():
            feats = module(torch.from_numpy(x)).numpy()
    finally:
        torch.set_num_threads(threads)
    head = SoftmaxHead(epochs=60, random_state=0).fit(feats, np.array(labels))
    return module, head, spec


def _cams(trained, corner: str, seed: int) -> list[dict]:
    module, head, _ = trained
    rng = np.random.default_rng(seed)
    kinds = ["stripes", "checks"] * 2
    images = np.stack([_scene(k, corner, rng) for k in kinds])
    classes = [str(c) for c in head.classes_]
    maps, layer = gradcam(module, head.coef_, head.intercept_, images, [classes.index(k) for k in kinds], batch_size=3)
    assert maps.shape == (4, SIZE, SIZE) and layer  # batches of 3 and 1
    assert maps.min() >= 0 and np.isclose(maps.max(), 1.0)
    return [quadrant_mass(m) for m in maps]


def test_heat_is_on_the_corner_that_holds_the_cue(trained):
    for corner, seed in (("top_left", 1), ("bottom_right", 2)):
        masses = _cams(trained, corner, seed)
        mean = {k: float(np.mean([m[k] for m in masses])) for k in masses[0]}
        assert mean[corner] > 0.5, (corner, masses)  # a uniform map gives 0.25
        assert all(v < 0.25 for k, v in mean.items() if k != corner), (corner, masses)
        assert sum(max(m, key=m.get) == corner for m in masses) >= 3, (corner, masses)


def test_explain_misclassified_batches_only_wrong_images(trained, tmp_path):
    from PIL import Image

    from edgemaker.data.validate import Sample
    from edgemaker.evaluate.metrics import evaluate_predictions

    _, head, spec = trained
    rng = np.random.default_rng(3)
    kinds = ["stripes", "checks", "stripes"]
    samples = []
    for i, k in enumerate(kinds):
        path = tmp_path / f"{k}_{i}.png"
        Image.fromarray(_scene(k, "top_left", rng)).save(path)
        samples.append(Sample(path=path, label=k, content=str(i)))
    classes = [str(c) for c in head.classes_]
    proba = np.zeros((3, 2))
    proba[0, classes.index("checks")] = 0.9  # wrong
    proba[0, classes.index("stripes")] = 0.1
    proba[1, classes.index("checks")] = 1.0  # right
    proba[2, classes.index("checks")] = 0.6  # wrong, less confident
    proba[2, classes.index("stripes")] = 0.4
    ev = evaluate_predictions(classes, kinds, proba)

    class Clf:
        pass

    clf = Clf()
    clf.spec, clf.head = spec, head
    out = explain_misclassified(clf, samples, ev, limit=5)
    assert out.skipped is None and out.total_wrong == 2 and out.layer
    assert [item["index"] for item in out.items] == [0, 2]  # most confident mistake first, the right one skipped
    assert all(item["overlay"].startswith("data:image/jpeg;base64,") for item in out.items)
    assert out.items[0]["predicted"] == "checks" and out.seconds > 0
    record = out.to_dict()
    assert record["explained"] == 2 and "overlay" not in record["images"][0]
    assert explain_misclassified(clf, samples, ev, limit=1).items[0]["index"] == 0


def test_sounds_are_skipped_with_a_reason():
    from edgemaker.backbones import get_spec
    from edgemaker.evaluate.metrics import evaluate_predictions

    class Clf:
        spec = get_spec("aisfx")
        head = None

    ev = evaluate_predictions(["a", "b"], ["a", "b"], np.array([[0.2, 0.8], [0.9, 0.1]]))
    out = explain_misclassified(Clf(), [], ev)
    assert out.items == [] and "sounds" in out.skipped and out.total_wrong == 2


def test_colours_and_overlay():
    ramp = heat_colours(np.linspace(0, 1, 5))
    assert ramp.shape == (5, 3) and ramp[0, 2] > ramp[0, 0] and ramp[-1, 0] > ramp[-1, 2]  # blue -> red
    uri = overlay(np.zeros((32, 32, 3), np.uint8), np.ones((32, 32)), side=16)
    assert uri.startswith("data:image/jpeg;base64,")
