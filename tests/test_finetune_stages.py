"""--fine-tune through one stage view (backbones/stages.py) for every fine-tunable backbone, and a
fine-tuned YAMNet end to end from the CLI (ONNX and full-int8 TFLite with its head equalisation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_tone_folder
from edgemaker.backbones import get_builder, get_spec
from edgemaker.backbones.stages import stages
from edgemaker.backbones.tfnet import read_state
from edgemaker.backbones.weights import resolve_weights
from edgemaker.cli import cli
from edgemaker.tasks import finetune

torch = pytest.importorskip("torch")
SIZE = 64


def _input(spec, rng: np.random.Generator):
    if spec.audio is not None:  # a waveform window: the prefix holds the front end
        return torch.from_numpy((0.1 * rng.standard_normal((2, spec.audio.window_samples))).astype(np.float32))
    return torch.from_numpy(rng.standard_normal((2, 3, SIZE, SIZE)).astype(np.float32))


@pytest.mark.parametrize("name", finetune.FINE_TUNABLE)
def test_prefix_then_tail_is_the_whole_backbone(name):
    """What fine-tuning trains (the tail from block n-2, with an identity linear head) applied to what
    it caches (the prefix up to block n-2) gives the registered backbone's own pooled features."""
    spec = get_spec(name)
    spec = spec.with_image_size(SIZE) if spec.image is not None else spec
    n = finetune.block_count(spec)
    net = finetune.trunk(spec)
    assert len(stages(net).output_channels()) == n and stages(net).output_channels()[-1] <= spec.feature_dim
    eye = np.eye(spec.feature_dim, dtype=np.float32)
    tail = finetune.tail_module(net, n - 2, eye, np.zeros(spec.feature_dim, np.float32), 0.5)
    assert any(p.requires_grad for p in stages(net).blocks[-1].parameters())
    assert not any(p.requires_grad for p in stages(net).blocks[0].parameters())  # frozen before the cut
    x = _input(spec, np.random.default_rng(0))
    with torch.no_grad():
        whole = get_builder(spec.name)(spec, resolve_weights(spec.weights)).eval()(x)
        got = tail(finetune.prefix_module(spec, n - 2)(x))  # eval mode: dropout off
    assert got.shape == whole.shape == (2, spec.feature_dim)
    np.testing.assert_allclose(got.numpy(), whole.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mobilenet_v1_025_k7", "mobilenet_v1_050_gray_k5", "efficientnet_lite0_k5"])
def test_a_cut_trunk_prefix_then_tail_is_the_cut_backbone(name):
    """The budget search's fine-tuning (tasks/budget_finetune.py) sees the whole trunk up to the cut:
    its prefix then tail (the last two kept blocks, no head) give the cut backbone's features."""
    from edgemaker.backbones.stages import cut_trunk_view

    spec = get_spec(name).with_image_size(SIZE)
    view = cut_trunk_view(spec, resolve_weights(spec.weights))
    depth = view.depth
    assert len(view.stages.blocks) == depth < len(stages(view.net).blocks)  # the trunk is whole, seen to its cut
    eye = np.eye(spec.feature_dim, dtype=np.float32)
    tail = finetune.tail_module(view.net, depth - 2, eye, np.zeros(spec.feature_dim, np.float32), 0.5, depth)
    assert len(tail.blocks) == 2 and not any(p.requires_grad for p in stages(view.net).blocks[depth].parameters())
    x = _input(spec, np.random.default_rng(1))
    with torch.no_grad():
        whole = get_builder(spec.name)(spec, resolve_weights(spec.weights)).eval()(x)
        got = tail(finetune.prefix_of(view, depth - 2)(x))
    assert got.shape == whole.shape == (2, spec.feature_dim)
    np.testing.assert_allclose(got.numpy(), whole.numpy(), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def yamnet_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("finetune-yamnet")
    data = make_tone_folder(base / "data", per_class=5, seed=1)
    out = base / "run"
    # One head epoch leaves room on validation (loss) that three fine-tuning epochs win back.
    args = ["train", str(data), "--out", str(out), "--backbone", "yamnet", "--fine-tune", "1",
            "--fine-tune-epochs", "3", "--epochs", "1", "--label-smoothing", "0", "--cv-folds", "0",
            "--threads", "2", "--cache-dir", str(base / "cache"), "--formats", "onnx-fp32,tflite-int8", "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return data, out, json.loads(result.stdout)


def test_yamnet_fine_tune_from_the_cli_trains_only_the_last_block(yamnet_run):
    _, out, metrics = yamnet_run
    ft = metrics["fine_tune"]
    assert ft["backbone"] == "yamnet" and ft["blocks"] == 13 and ft["cut"] == 12 and ft["chosen_k"] == 1
    assert ft["fine_tuned"]["val_accuracy_onnx"] == ft["fine_tuned"]["val_accuracy"]
    assert ft["fine_tuned"]["test_accuracy"] == metrics["test"]["accuracy"]
    before = read_state(resolve_weights(get_spec("yamnet").weights))
    after = read_state(Path(ft["weights"]))
    assert set(after) == {k for k in before if not k.startswith("classifier.")}  # the trunk, the builder's keys
    changed = {k for k in after if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed and all(k.startswith("blocks.12.") for k in changed), sorted(changed)[:5]
    assert {k.split(".")[2] for k in changed} == {"dw", "pw"}  # both convolutions of the last block


def test_fine_tuned_yamnet_exports_carry_the_fine_tuned_trunk(yamnet_run):
    import onnx

    from edgemaker.backbones.runtime import make_session
    from edgemaker.data.audio import clip_windows
    from edgemaker.export.tflite import read_metadata

    data, out, metrics = yamnet_run
    spec = get_spec("yamnet")
    x = np.concatenate([np.stack(list(clip_windows(p, spec.audio))) for p in sorted(data.rglob("*.wav"))])
    tuned = get_builder("yamnet")(spec, Path(metrics["fine_tune"]["weights"])).eval()  # strict reload by the builder
    frozen = get_builder("yamnet")(spec, resolve_weights(spec.weights)).eval()
    with torch.no_grad():
        e_tuned, e_frozen = tuned(torch.from_numpy(x)).numpy(), frozen(torch.from_numpy(x)).numpy()
    moved = np.abs(e_tuned - e_frozen).max()
    assert moved > 1e-2  # the trunk really changed

    # The ONNX file computes the fine-tuned trunk (its embedding tensor), and scores as the model in memory.
    model = onnx.load(str(out / "model_fp32.onnx"))
    model.graph.output.append(onnx.helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, None))
    session = make_session(model.SerializeToString(), 2)
    e_onnx = session.run(["embedding"], {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(e_onnx, e_tuned, atol=moved / 20)
    onnx_export = next(e for e in metrics["exports"] if e["format"] == "onnx-fp32")
    assert onnx_export["agreement_with_float"] == 1.0 and onnx_export["test_accuracy"] == metrics["test"]["accuracy"]

    # The full-int8 TFLite file: the fine-tuned trunk with the head equalised into its last convolution, evaluated.
    int8 = next(e for e in metrics["exports"] if e["format"] == "tflite-int8")
    assert int8["test_accuracy"] is not None and int8["agreement_with_float"] is not None
    assert len(read_metadata(out / Path(int8["path"]).name)["embedding_scale"]) == 1024


def test_image_tfnet_fine_tune_reloads_through_its_builder(tmp_path):
    """mobilenet_v1_025 (Keras BatchNorm kept unfolded): K=1 trains the last separable block only, its
    BatchNorm statistics stay frozen, and the saved weights load strictly through the builder."""
    from conftest import make_image_folder
    from edgemaker.data.splits import SplitOptions, make_splits
    from edgemaker.data.validate import validate_folder
    from edgemaker.tasks.classifier import ImageClassifier
    from edgemaker.tasks.options import ClassifierOptions, FineTuneOptions, HParams, ModelOptions

    splits = make_splits(validate_folder(make_image_folder(tmp_path / "data", per_class=12)), SplitOptions(seed=0))
    options = ClassifierOptions(model=ModelOptions(backbone="mobilenet_v1_025", input_size=SIZE),
                                hparams=HParams(epochs=1, label_smoothing=0.0, cv_folds=0), threads=2,
                                cache_dir=tmp_path / "cache", fine_tune=FineTuneOptions(depth=1, epochs=3))
    clf = ImageClassifier.create(splits.train, splits.val, options)
    # One head epoch leaves validation loss that fine-tuning wins back, so K=1 is chosen.
    assert clf.fine_tune["backbone"] == "mobilenet_v1_025" and clf.fine_tune["cut"] == 12
    assert clf.fine_tune["chosen_k"] == 1, clf.fine_tune["candidates"]
    spec = clf.spec
    before = read_state(resolve_weights(clf.head_only.spec.weights))
    after = read_state(resolve_weights(spec.weights))
    assert set(after) >= set(before)
    changed = {k for k in before if not torch.equal(before[k].float(), after[k].float())}
    assert changed and all(k.startswith("blocks.12.") for k in changed), sorted(changed)[:5]
    assert not any("running_" in k for k in changed)  # BatchNorm statistics frozen
    get_builder(spec.name)(spec, resolve_weights(spec.weights))  # strict load of the saved weights
    assert clf.fine_tune["fine_tuned"]["val_accuracy_onnx"] == clf.fine_tune["fine_tuned"]["val_accuracy"]
