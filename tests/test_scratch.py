"""small_cnn from scratch and --base-model transfer (issue 10 parts 2 and 3), on generated digits.

Style A: thick upright digits, 40 per class; style B: thinner, slanted, noisy digits, 10 per class
for training. A small_cnn trained on A, transferred to B with --base-model (last 3 layers reset
and retrained), must beat small_cnn trained from scratch on the same B images.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from edgemaker.errors import EdgemakerError
from edgemaker.pipeline import train_run
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams, ModelOptions

FAST = HParams(epochs=30, learning_rate=3e-3, patience=10)
NO_FLIP = AugmentationOptions(flip=False)  # a mirrored 2 is not a 2


def digit_image(d: int, style: str, rng: np.random.Generator, size: int = 28) -> Image.Image:
    big = size * 4
    im = Image.new("L", (big, big), 0)
    font = ImageFont.load_default(size=int(big * rng.uniform(0.5, 0.85)))
    stroke = int(rng.integers(2, 5)) if style == "A" else int(rng.integers(1, 3))
    ImageDraw.Draw(im).text((big / 2 + rng.uniform(-16, 16), big / 2 + rng.uniform(-16, 16)), str(d), fill=255,
                            font=font, anchor="mm", stroke_width=stroke, stroke_fill=255)
    if style == "B":
        shear = rng.uniform(0.1, 0.3)
        im = im.transform(im.size, Image.Transform.AFFINE, (1, shear, -shear * big / 2, 0, 1, 0), Image.Resampling.BICUBIC)
    im = im.rotate(rng.uniform(-20, 20), Image.Resampling.BICUBIC)
    arr = np.asarray(im.resize((size, size), Image.Resampling.BOX), np.float32)
    if style == "B":
        arr = arr * rng.uniform(0.7, 1.0) + rng.normal(0, 8, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB")


def digit_folder(root: Path, style: str, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for d in range(10):
        (root / str(d)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            digit_image(d, style, rng).save(root / str(d) / f"{style}{d}_{i:03d}.png")
    return root


def _formats() -> list[str]:
    tflite = importlib.util.find_spec("litert_torch") is not None
    return ["onnx-fp32", "onnx-int8"] + (["tflite-int8"] if tflite else [])


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("digits")
    a = digit_folder(root / "A", "A", 40, seed=1)
    b = root / "B"
    digit_folder(b / "train", "B", 10, seed=3)
    digit_folder(b / "val", "B", 10, seed=4)
    digit_folder(b / "test", "B", 20, seed=5)
    options = ClassifierOptions(model=ModelOptions("small_cnn", 28), hparams=FAST, augmentation=NO_FLIP)
    metrics = train_run(a, root / "runA", options, formats=_formats())
    return {"root": root, "A": a, "B": b, "runA": root / "runA", "metrics": metrics}


def test_small_cnn_trains_and_exports_tiny_int8(digits):
    m = digits["metrics"]
    assert m["backbone"]["name"] == "small_cnn"
    net = m["training"]["network"]
    assert net["trained"] == "from scratch" and net["grayscale"] is True and net["input_size"] == 28
    assert m["test"]["accuracy"] >= 0.9, m["test"]["accuracy"]
    sizes = {e["format"]: e["size_bytes"] for e in m["exports"]}
    assert sizes["onnx-int8"] < 100_000  # tens of KB
    assert sizes.get("tflite-int8", 0) < 100_000
    for e in m["exports"]:
        assert e["test_accuracy"] >= m["test"]["accuracy"] - 0.05, e
    meta = json.loads(__import__("onnx").load(str(digits["runA"] / "model_fp32.onnx")).metadata_props[0].value)
    assert meta["backbone"] == "small_cnn" and meta["input"]["size"] == 28


def test_transfer_beats_scratch_at_ten_per_class(digits):
    """Mean over three training seeds: from scratch, 10 images a class leave a wide spread (measured
    0.78-0.915 test accuracy), while the transferred network stays near 0.9."""
    import dataclasses

    root, b = digits["root"], digits["B"]
    scratch, transfer = [], []
    for seed in (0, 1, 2):
        hp = dataclasses.replace(FAST, seed=seed)
        scratch.append(train_run(b, root / f"scratchB{seed}", ClassifierOptions(
            model=ModelOptions("small_cnn", 28), hparams=hp, augmentation=NO_FLIP), formats=["onnx-fp32"]))
        transfer.append(train_run(b, root / f"transferB{seed}", ClassifierOptions(
            model=ModelOptions(base_model=digits["runA"] / "model_fp32.onnx"), hparams=hp, augmentation=NO_FLIP),
            formats=["onnx-fp32", "onnx-int8"] if seed == 0 else ["onnx-fp32"]))
    net = transfer[0]["training"]["network"]
    assert net["retrain_last"] == 3 and net["weight_layers"] == 6 and net["base_classes"] == 10
    s = float(np.mean([m["test"]["accuracy"] for m in scratch]))
    t = float(np.mean([m["test"]["accuracy"] for m in transfer]))
    assert t > s + 0.02, (t, s)
    exports = transfer[0]["exports"]
    assert {e["format"] for e in exports} == {"onnx-fp32", "onnx-int8"}
    assert exports[0]["test_accuracy"] == pytest.approx(transfer[0]["test"]["accuracy"], abs=0.01)


def _tiny_torch(last_conv: bool = False):
    import torch

    layers = [torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
    if last_conv:
        layers = [torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1),
                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
    else:
        layers += [torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)]
    return torch.nn.Sequential(*layers).eval()


def _export(module, path: Path, size: int = 16) -> Path:
    import torch

    torch.onnx.export(module, (torch.zeros(1, 1, size, size),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False)
    return path


def _opts(base: Path, **kw) -> ClassifierOptions:
    return ClassifierOptions(model=ModelOptions(base_model=base, **kw), hparams=HParams(epochs=3), augmentation=NO_FLIP)


def test_generic_onnx_needs_an_input_recipe_then_trains(digits, tmp_path):
    base = _export(_tiny_torch(), tmp_path / "generic.onnx")
    with pytest.raises(EdgemakerError, match="input recipe is missing --input-scaling"):
        train_run(digits["B"], tmp_path / "run", _opts(base), formats=["onnx-fp32"])
    m = train_run(digits["B"], tmp_path / "run", _opts(base, input_scaling="0..1", retrain_last=2), formats=["onnx-fp32"])
    assert m["backbone"]["input_size"] == 16 and m["training"]["network"]["weight_layers"] == 3


def test_torchscript_base_model(digits, tmp_path):
    import torch

    path = tmp_path / "model.pt"
    torch.jit.script(_tiny_torch()).save(str(path))
    m = train_run(digits["B"], tmp_path / "run", _opts(path, input_size=16, input_scaling="-1..1"), formats=["onnx-fp32"])
    assert m["training"]["network"]["retrain_last"] == 3 and len(m["classes"]) == 10


def test_one_line_errors(digits, tmp_path):
    b = digits["B"]
    with pytest.raises(EdgemakerError, match=r"--retrain-last 99: model_fp32.onnx has only 6 weight layers"):
        train_run(b, tmp_path / "r1", _opts(digits["runA"] / "model_fp32.onnx", retrain_last=99), formats=["onnx-fp32"])
    conv_last = _export(_tiny_torch(last_conv=True), tmp_path / "conv_last.onnx")
    with pytest.raises(EdgemakerError, match="cannot read the class count: the last weight layer is Conv2d"):
        train_run(b, tmp_path / "r2", _opts(conv_last, input_scaling="0..1"), formats=["onnx-fp32"])
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("NonMaxSuppression", ["x"], ["y"])], "g", [x], [y])
    odd = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(odd))
    with pytest.raises(EdgemakerError, match="operator NonMaxSuppression cannot be converted"):
        train_run(b, tmp_path / "r3", _opts(odd, input_scaling="0..1"), formats=["onnx-fp32"])
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(EdgemakerError, match="junk.onnx: not an ONNX or TorchScript model"):
        train_run(b, tmp_path / "r4", _opts(tmp_path / "junk.onnx"), formats=["onnx-fp32"])


def test_small_cnn_inference_form_matches_training_form():
    import torch

    from edgemaker.backbones.small_cnn import make_network

    for gray in (True, False):
        torch.manual_seed(0)
        net = make_network(8, 4, gray)
        net.train()
        net(torch.randn(16, 3, 8, 8))  # move BatchNorm statistics away from identity
        net.eval()
        x = torch.randn(4, 3, 8, 8)
        with torch.no_grad():
            before = net(x)
            after = net.fuse()(x)
        assert torch.allclose(before, after, atol=1e-5)
        assert net.blocks[0].conv.in_channels == 3


def test_trained_weights_kind_cannot_be_resolved_before_a_run():
    from edgemaker.backbones import get_spec
    from edgemaker.backbones.weights import resolve_weights

    with pytest.raises(EdgemakerError, match="made by a training run"):
        resolve_weights(get_spec("small_cnn").weights)


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from edgemaker.cli import main

    data = digit_folder(tmp_path / "d", "A", 3, seed=0)

    def run(*args) -> str:
        monkeypatch.setattr("sys.argv", ["edgemaker", "train", str(data), "--out", str(tmp_path / "o"), *args])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err

    assert "missing.onnx: --base-model file not found" in run("--base-model", str(tmp_path / "missing.onnx"))
    assert "--base-model replaces the backbone" in run("--base-model", "x.onnx", "--backbone", "small_cnn")
    assert "input_size must be within 8..512" in run("--backbone", "small_cnn", "--input-size", "4")


def test_quantized_edgemaker_file_points_to_the_fp32_one(digits, tmp_path):
    with pytest.raises(EdgemakerError, match="a quantized \\(int8\\) file cannot be retrained; use the run's model_fp32.onnx"):
        train_run(digits["B"], tmp_path / "r", _opts(digits["runA"] / "model_int8.onnx"), formats=["onnx-fp32"])


def test_cli_base_model_on_a_runs_fp32_file(digits, tmp_path):
    from click.testing import CliRunner

    from edgemaker.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(digits["B"]), "--out", str(out), "--base-model",
                                      str(digits["runA"] / "model_fp32.onnx"), "--retrain-last", "2", "--epochs", "3",
                                      "--no-flip", "--formats", "onnx-fp32", "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["backbone"]["name"] == "base_model" and m["training"]["network"]["retrain_last"] == 2
    assert json.loads((out / "config.json").read_text())["options"]["model"]["base_model"].endswith("model_fp32.onnx")
    assert "last 2 of 6 weight layers reset and retrained" in (out / "report.html").read_text()


def test_imbalanced_classes_train_with_balanced_weights(tmp_path):
    """An imbalanced set goes through the same class-weight rule as the head (auto: balanced)."""
    import torch

    from edgemaker.backbones import get_spec
    from edgemaker.data.validate import validate_folder
    from edgemaker.progress import SilentProgress
    from edgemaker.tasks import scratch

    rng = np.random.default_rng(0)
    for d, n in ((1, 12), (7, 3)):
        (tmp_path / str(d)).mkdir()
        for i in range(n):
            digit_image(d, "A", rng).save(tmp_path / str(d) / f"{i}.png")
    samples = validate_folder(tmp_path).samples
    train, val, _ = scratch.image_sets(get_spec("small_cnn"), samples, samples[:2], ClassifierOptions(), SilentProgress())
    seen = {}
    original = torch.nn.CrossEntropyLoss

    def spy(*args, **kw):
        seen["weight"] = kw.get("weight")
        return original(*args, **kw)

    torch.nn.CrossEntropyLoss = spy
    try:
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
        scratch.fit_network(net, list(net.parameters()), train, val,
                            ClassifierOptions(hparams=HParams(epochs=1)), SilentProgress(), "t")
    finally:
        torch.nn.CrossEntropyLoss = original
    assert np.bincount(train.y).tolist() == [12, 3] and seen["weight"] is not None
    assert float(seen["weight"][1] / seen["weight"][0]) == pytest.approx(4.0)
