"""Export: the quantization value object, the stitched file, labels inside it, int8 that agrees."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import make_image_folder, outlier_calibration_set
from edgemaker import AugmentationOptions, ImageClassifier, ImageClassifierOptions, Quantization, load_image_folder
from edgemaker.errors import EdgemakerError
from edgemaker.export.runtime import ExportedModel
from edgemaker.pipeline import evaluate_files


def test_quantization_value_object(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    q = Quantization.for_int8([img, img, img], max_samples=2)
    assert q.kind == "int8" and len(q.calibration_files()) == 2
    assert Quantization.for_dynamic().kind == "dynamic" and Quantization.for_float16().kind == "float16"
    with pytest.raises(ValueError, match="representative"):
        Quantization.for_int8([])
    with pytest.raises(ValueError, match="not found"):
        Quantization.for_int8([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="max_samples"):
        Quantization.for_int8([img], max_samples=0)
    with pytest.raises(ValueError, match="takes no representative"):
        Quantization("dynamic", (img,))
    with pytest.raises(ValueError, match="unknown"):
        Quantization("int4")
    with pytest.raises(ValueError, match="minmax or mean"):
        Quantization.for_int8([img], ranges="median")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("d") / "data", per_class=14)
    splits = load_image_folder(root)
    options = ImageClassifierOptions(augmentation=AugmentationOptions(views=1))
    return splits, ImageClassifier.create(splits.train, splits.val, options)


@pytest.mark.parametrize("quantization,max_mb", [
    (Quantization.none(), 14.5), ("int8", 4.2), (Quantization.for_dynamic(), 4.5), (Quantization.for_float16(), 7.5),
])
def test_every_exported_file_runs_alone_and_agrees_with_the_float_model(trained, tmp_path, quantization, max_mb):
    splits, clf = trained
    if quantization == "int8":
        quantization = Quantization.for_int8([s.path for s in splits.train])
    path = clf.export(tmp_path, quantization)
    assert path.stat().st_size < max_mb * 1e6
    model = ExportedModel(path)
    assert model.labels == clf.classes == ["blobs", "checks", "stripes"]
    assert model.metadata["quantization"] == quantization.kind
    samples = splits.train + splits.val + splits.test
    exported = evaluate_files([model], [s.path for s in samples], [s.label for s in samples], clf.progress)[0]
    float_eval = clf.evaluate(samples)
    assert exported.agreement(float_eval) >= 0.9
    assert exported.accuracy >= float_eval.accuracy - 0.1
    assert model.latency_ms(runs=3, warmup=1) > 0


def test_the_fp32_file_reproduces_the_in_memory_probabilities(trained, tmp_path):
    splits, clf = trained
    model = ExportedModel(clf.export(tmp_path))
    proba_file = model.predict_files([s.path for s in splits.test])
    proba_mem = clf.head.predict_proba(clf.embed(splits.test).vectors)
    assert np.abs(proba_file - proba_mem).max() < 1e-4


def test_labels_travel_in_the_metadata_and_in_labels_txt(trained, tmp_path):
    splits, clf = trained
    path = clf.export(tmp_path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["labels"].split("\n") == clf.classes
    # A file without labels in its metadata falls back to labels.txt beside it.
    m = onnx.load(str(path))
    meta = [p for p in m.metadata_props if p.key == "edgemaker"][0]
    import json

    data = json.loads(meta.value)
    data["labels"] = []
    meta.value = json.dumps(data)
    bare = tmp_path / "bare" / "model.onnx"
    bare.parent.mkdir()
    onnx.save(m, str(bare))
    with pytest.raises(EdgemakerError, match="no labels"):
        ExportedModel(bare)
    (bare.parent / "labels.txt").write_text("\n".join(clf.classes) + "\n")
    assert ExportedModel(bare).labels == clf.classes


def test_foreign_or_missing_model_files_give_one_line_errors(tmp_path):
    with pytest.raises(EdgemakerError, match="not found"):
        ExportedModel(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(EdgemakerError, match="cannot load"):
        ExportedModel(junk)
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(EdgemakerError, match="unsupported model format"):
        ExportedModel(tmp_path / "m.tflite")


def _input_scale(path) -> float:
    """The scale of the first QuantizeLinear: the int8 grid of the (cast, normalised) input."""
    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return float(init[node.input[1]])


def _conv_output_scales(path) -> list[float]:
    """The output scale of every QLinearConv: the int8 grids inside the network."""
    model = onnx.load(str(path))
    init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [float(init[n.input[6]]) for n in model.graph.node if n.op_type == "QLinearConv"]


def test_calibration_ranges_mean_resists_an_outlier_sample(trained, tmp_path):
    _, clf = trained
    calib = outlier_calibration_set(tmp_path / "calib")
    scales, inner = {}, {}
    for ranges in ("minmax", "mean"):
        path = clf.export(tmp_path / ranges, Quantization.for_int8(calib, ranges=ranges), int8_aware_head=False)
        scales[ranges] = _input_scale(path)
        inner[ranges] = np.array(_conv_output_scales(path))
    # The input is data: under both rules its grid spans the extremes of the calibration images (the
    # outliers' pixels would otherwise be clipped before the network saw them) ...
    assert scales["mean"] == pytest.approx(scales["minmax"], rel=1e-6), scales
    # ... while inside the network the mean of the per-sample ranges keeps the outliers from
    # stretching the grids: none is wider, and many are narrower (a ReLU6 output's grid is fixed at 0..6).
    assert len(inner["mean"]) == len(inner["minmax"]) > 10
    assert (inner["mean"] <= inner["minmax"] * 1.001).all()
    assert (inner["mean"] < 0.9 * inner["minmax"]).mean() > 0.25, inner["mean"] / inner["minmax"]


def _int8_setup(trained, tmp_path, runtime):
    """(splits, classifier, its FloatModel, int8 quantization, the runtime's exporter, a fresh session)."""
    if runtime == "tflite":
        pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")
    from edgemaker.export.exporters import exporter_for
    from edgemaker.export.session import ExportSession

    splits, clf = trained
    model = clf.float_model()
    return (splits, clf, model, Quantization.for_int8([s.path for s in splits.train]), exporter_for(runtime),
            ExportSession(model, tmp_path))


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_int8_flow_aware_head_only_when_the_file_departs_from_float_and_refused_when_broken(trained, tmp_path, runtime):
    """The flow is the same for every runtime: quantize, score on validation against the float
    model, fit a head on the file's own int8 backbone only if it departs from the float model there,
    and refuse the file when its int8 network does not compute what the float one does."""
    from edgemaker.export.int8 import Validation, build_int8

    splits, clf, model, q, exporter, session = _int8_setup(trained, tmp_path, runtime)
    fp32 = session.float_file(exporter)
    calibration = session.inputs.calibration(q, model.metadata())
    samples = splits.train + splits.val + splits.test
    paths = [s.path for s in samples]
    fitted = []

    def fit(int8_backbone, digest):
        fitted.append(digest)
        return clf._fit_int8_head(int8_backbone, digest)

    def build(name, validation):
        return build_int8(exporter, model, True, fp32, tmp_path / f"{name}{exporter.suffix}", q, calibration,
                          session.inputs, validation, fit)

    build("plain", None)
    plain = exporter.load(tmp_path / f"plain{exporter.suffix}").predict_files(paths)
    answers = [clf.classes[i] for i in plain.argmax(1)]  # labels the plain int8 file gets all right

    # A float model that answers exactly as the plain int8 file does: nothing to win, no head fitted.
    record = build("same", Validation(paths, answers, plain))
    assert record["plain_val_accuracy"] == record["float_val_accuracy"] and record["kept"] == "plain"
    assert not fitted and record["int8_aware_val_accuracy"] is None

    # A float model that differs from the int8 file on 7 of the 42 samples: surely more than 5% apart
    # (95% interval 7% to 31%) but not surely more than 10%: the int8-aware head is fitted, built,
    # scored and kept only if strictly better; the file ships.
    from edgemaker.evaluate.metrics import proportion_interval

    assert len(samples) == 42 and 0.05 < proportion_interval(7, 42)[0] <= 0.10
    float_answers = [clf.classes[(clf.classes.index(a) + 1) % len(clf.classes)] if i < 7 else a
                     for i, a in enumerate(answers)]
    record = build("departs", Validation(paths, answers, np.eye(len(clf.classes))[
        [clf.classes.index(c) for c in float_answers]]))
    assert fitted and record["int8_aware_val_accuracy"] is not None and not record.get("refused")
    assert record["kept"] == ("int8-aware head" if record["int8_aware_val_accuracy"] > record["plain_val_accuracy"]
                              else "plain")
    assert (tmp_path / f"departs{exporter.suffix}").is_file()

    # A float model right on every sample under labels shifted by one class: the int8 network answers
    # otherwise almost everywhere, so no head is trusted to repair it and the file is refused.
    fitted.clear()
    shifted = [clf.classes[(clf.classes.index(s.label) + 1) % len(clf.classes)] for s in samples]
    record = build("hard", Validation(paths, shifted, np.eye(len(clf.classes))[
        [clf.classes.index(c) for c in shifted]]))
    assert record["float_val_accuracy"] == 1.0 and record["plain_val_agreement"] < 0.9 and not fitted
    assert record["kept"] is None and "int8 does not suit these inputs" in record["refused"]
    assert not (tmp_path / f"hard{exporter.suffix}").exists()
    assert not list(tmp_path.glob(".*"))  # no candidate file left behind


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_a_new_head_on_the_same_int8_backbone(trained, tmp_path, runtime):
    """ONNX swaps the float head's weights in the int8 file; TFLite patches the float file's head
    and quantizes again. Either way the file computes softmax(int8 embedding @ W.T + b)."""
    splits, clf, model, q, exporter, session = _int8_setup(trained, tmp_path, runtime)
    int8 = session.export(runtime, q)
    meta = model.metadata("int8")
    rng = np.random.default_rng(0)

    class Head:
        coef_ = rng.normal(0, 0.05, model.coef.shape).astype(np.float32)
        intercept_ = rng.normal(0, 0.1, model.intercept.shape).astype(np.float32)

    target = tmp_path / f"swapped{exporter.suffix}"
    exporter.int8_with_head(model.with_head(Head), True, session.float_file(exporter), int8, target, q,
                            session.inputs.calibration(q, model.metadata()), meta)
    x = np.concatenate(session.inputs.files([s.path for s in splits.test], meta))
    emb = exporter.int8_backbone(target, meta, None).embed(x)
    logits = emb @ Head.coef_.T + Head.intercept_
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    got = exporter.load(target).predict_proba(x)
    # ONNX: a float head, exact; TFLite: an int8 head (its output is int8 with 1/256 steps)
    assert np.abs(got - expected).max() < (1e-5 if runtime == "onnx" else 0.03)


def test_the_int8_route_is_chosen_on_validation(trained, tmp_path):
    """The ONNX exporter offers route variants; the flow keeps the one that answers as the float model
    does on validation. A planted variant (the int8 file with its head's classes rolled by one) is
    offered first, so the earlier-wins tie rule alone would keep it: it is dropped when validation
    says it disagrees with float, and kept when validation's float model is the rolled one."""
    from types import SimpleNamespace

    from edgemaker.export.int8 import Validation, build_int8
    from edgemaker.export.onnx_model import OnnxExporter

    splits, clf, model, q, _, session = _int8_setup(trained, tmp_path, "onnx")
    rolled = model.with_head(SimpleNamespace(coef_=np.roll(model.coef, 1, axis=0),
                                             intercept_=np.roll(model.intercept, 1)))

    class Planted(OnnxExporter):
        int8_routes = (("rolled head", {"keep_float": ("first_conv",)}), ("all int8", {}))

        def quantize_route(self, route, source, target, quantization, calibration, metadata):
            super().quantize_route(route, source, target, quantization, calibration, metadata)
            if route:  # the planted variant: same int8 backbone, classes rolled
                aside = target.with_name(".planted.onnx")
                self.int8_with_head(rolled, True, source, target, aside, quantization, calibration,
                                    {**metadata, "planted": True})
                self.replace(aside, target)
            return target

    exporter = Planted()
    fp32 = session.float_file(exporter)
    calibration = session.inputs.calibration(q, model.metadata())
    samples = splits.val + splits.test
    paths, labels = [s.path for s in samples], [s.label for s in samples]

    def build(name, float_proba):
        target = tmp_path / f"{name}.onnx"
        record = build_int8(exporter, model, True, fp32, target, q, calibration, session.inputs,
                            Validation(paths, labels, float_proba))
        return record, ExportedModel(target)

    record, kept = build("float", clf.evaluate(samples).probabilities)
    candidates = {c["name"]: c for c in record["route"]["candidates"]}
    with pytest.raises(ValueError, match="unknown layer"):
        exporter.quantize_route({"keep_float": ("middle",)}, fp32, tmp_path / "bad.onnx", q, calibration,
                               model.metadata("int8"))
    assert record["route"]["chosen"] == "all int8" and "planted" not in kept.metadata
    assert candidates["rolled head"]["val_agreement"] < candidates["all int8"]["val_agreement"]
    assert kept.metadata["int8_route"]["reduce_range"] is True  # the anti-saturation route is kept either way

    rolled_proba = ExportedModel(tmp_path / "float.onnx").predict_files(paths)[:, np.roll(np.arange(3), 1)]
    record, kept = build("rolled", rolled_proba)
    assert record["route"]["chosen"] == "rolled head" and kept.metadata.get("planted") is True
    if record["route"]["candidates"][0]["val_agreement"] == 1.0:  # full agreement ends the search
        assert record["route"]["not_tried"] == ["all int8"] and len(record["route"]["candidates"]) == 1
    assert kept.metadata["int8_route"]["keep_float"] == ["first_conv"]
    assert not list(tmp_path.glob(".*"))  # no candidate file left behind
    # "keep_float" leaves exactly the backbone's first convolution in float
    ops = {name: [n.op_type for n in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node] for name in ("float", "rolled")}
    assert ops["float"].count("Conv") == 0 and ops["rolled"].count("Conv") == 1
    assert ops["rolled"].count("QLinearConv") == ops["float"].count("QLinearConv") - 1



def test_entry_extremes_run_only_the_front_end_and_are_measured_once(tmp_path):
    """The int8 network's entry (the front end's output, through a normalising op) takes the extremes of
    the calibration inputs; only the nodes it depends on run, and a second variant reads the cache."""
    from onnx import TensorProto, helper, numpy_helper

    from edgemaker.export.onnx_model import _entry_extremes, _entry_tensors, _keep_only_what_computes

    nodes = [helper.make_node("Mul", ["x", "two"], ["mel"], name="/frontend/scale"),
             helper.make_node("Sub", ["mel", "mean"], ["centred"], name="normalise"),
             helper.make_node("MatMul", ["centred", "w"], ["y"], name="network")]
    inits = [numpy_helper.from_array(np.float32(2), "two"), numpy_helper.from_array(np.float32(1), "mean"),
             numpy_helper.from_array(np.ones((4, 3), np.float32), "w")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert sorted(_entry_tensors(model)) == ["centred", "mel"]

    cut = onnx.load(str(path))
    _keep_only_what_computes(cut, ["mel", "centred"])
    assert [n.name for n in cut.graph.node] == ["/frontend/scale", "normalise"]
    assert sorted(i.name for i in cut.graph.initializer) == ["mean", "two"]

    rng = np.random.default_rng(0)
    calibration = [rng.normal(size=4).astype(np.float32) for _ in range(20)]
    cache = tmp_path / "ranges.entry.json"
    overrides = _entry_extremes(path, "x", calibration, cache)
    x = np.stack(calibration)
    assert overrides["mel"][0]["rmin"] == pytest.approx(2 * x.min()) and overrides["mel"][0]["rmax"] == pytest.approx(2 * x.max())
    assert overrides["centred"][0]["rmax"] == pytest.approx(2 * x.max() - 1)
    assert cache.is_file()
    again = _entry_extremes(path, "x", [c * 10 for c in calibration], cache)  # the cache, not a second pass
    assert again == overrides
    fresh = _entry_extremes(path, "x", [c * 10 for c in calibration])
    assert fresh["mel"][0]["rmax"] == pytest.approx(20 * x.max())
