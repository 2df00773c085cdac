"""--fine-tune: the last K blocks trained on cached cut activations, plugged in as an ordinary backbone.

Generated images at 64 px and 1-2 s tones keep every network run small; epochs are one to three.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_image_folder, make_tone_folder
from test_cli import assert_one_line_error, edgemaker
from edgemaker.backbones import DEFAULT_AUDIO_BACKBONES, get_builder, get_spec
from edgemaker.backbones.weights import load_state_dict, resolve_weights
from edgemaker.cli import cli
from edgemaker.data.splits import SplitOptions, make_splits
from edgemaker.data.validate import validate_folder
from edgemaker.errors import EdgemakerError
from edgemaker.tasks import finetune
from edgemaker.tasks.classifier import AudioClassifier, ImageClassifier
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, FineTuneOptions, HParams, ModelOptions

SIZE = 64


def _options(cache: Path, **ft) -> ClassifierOptions:
    # No label smoothing: on data the head already separates, fine-tuning then wins on validation loss.
    # cv_folds=0: the head (and the use of the augmented views) chosen on the validation split, as the
    # fine-tuned candidates are compared there; these tests rely on the views being used (2 views + clean),
    # so the views are given (on 3 validation images their choice is a coin flip on the loss).
    return ClassifierOptions(model=ModelOptions(input_size=SIZE), hparams=HParams(label_smoothing=0.0, cv_folds=0),
                             augmentation=AugmentationOptions(enabled=True), threads=2, cache_dir=cache,
                             fine_tune=FineTuneOptions(**{"epochs": 2, **ft}))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("finetune")
    return base, make_splits(validate_folder(make_image_folder(base / "data", per_class=12)), SplitOptions(seed=0))


def _tuned(cls, splits, options: ClassifierOptions, k: int):
    clf = cls.create(splits.train, splits.val, options)
    assert clf.fine_tune["chosen_k"] == k, clf.fine_tune
    return clf


@pytest.fixture(scope="module")
def tuned(setup):
    base, splits = setup
    return _tuned(ImageClassifier, splits, _options(base / "cache", depth=2), 2)


def test_cut_activations_are_cached_and_reused(setup, tuned):
    base, splits = setup
    first = tuned.fine_tune["activations"]
    assert first["computed"] == len(splits.train) * 3 + len(splits.val) and first["reused"] == 0  # 2 views + clean
    again = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth=2))
    assert again.fine_tune["activations"]["computed"] == 0
    assert again.fine_tune["activations"]["reused"] == first["computed"]
    assert again.spec.weights.sha256 == tuned.spec.weights.sha256  # deterministic, content-addressed
    assert all("rank" not in c for c in again.fine_tune["candidates"])
    json.dumps(again.fine_tune)  # goes into metrics.json as it is


def test_only_the_last_k_blocks_change(tuned):
    spec = tuned.spec
    assert spec.weights.kind == "file" and Path(spec.weights.location).name == f"{spec.weights.sha256}.pth"
    assert spec.cache_id != tuned.head_only.spec.cache_id and spec.name == "efficientnet_lite0"
    before = load_state_dict(resolve_weights(tuned.head_only.spec.weights))
    after = load_state_dict(resolve_weights(spec.weights))
    assert set(before) == set(after)
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    trainable = ("_blocks.14.", "_blocks.15.", "_conv_head.", "_bn1.")
    assert changed and all(k.startswith(trainable) for k in changed), sorted(changed)[:5]
    assert any(k.startswith("_blocks.14.") for k in changed) and any(k.startswith("_blocks.15.") for k in changed)
    assert not any("running_" in k for k in changed)  # BatchNorm statistics frozen
    assert not np.allclose(tuned.head.coef_, tuned.head_only.head.coef_)


def test_exported_onnx_agrees_with_the_in_memory_model(setup, tuned, tmp_path):
    import torch

    from edgemaker.data.images import load_for_model
    from edgemaker.export.runtime import load_exported

    _, splits = setup
    samples = list(splits.test) + list(splits.val)
    spec = tuned.spec
    module = get_builder(spec.name)(spec, resolve_weights(spec.weights))  # strict load of the saved weights
    x = np.stack([load_for_model(s.path.read_bytes(), spec.image) for s in samples]).astype(np.float32)
    mean, std = np.array(spec.image.mean, np.float32), np.array(spec.image.std, np.float32)
    with torch.no_grad():
        emb = module(torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())).numpy()
    in_memory = tuned.head.predict_proba(emb)
    exported = load_exported(tuned.export(tmp_path)).predict_files([s.path for s in samples])
    np.testing.assert_allclose(exported, in_memory, atol=2e-3)
    labels = np.array([s.label for s in samples])
    assert (tuned.head.classes_[exported.argmax(1)] == labels).mean() == (tuned.head.classes_[in_memory.argmax(1)] == labels).mean()


def test_k_larger_than_the_backbone_is_one_line_error(setup):
    base, splits = setup
    with pytest.raises(EdgemakerError, match=r"efficientnet_lite0 has 16 blocks; use at most 16") as info:
        ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth=17))
    assert "\n" not in str(info.value)
    with pytest.raises(EdgemakerError, match="efficientnet_lite0, efficientnet_lite1.*efficientnet_lite0_mel"):
        finetune.check_supported(get_spec("aisfx"), [1])


def _scripted(monkeypatch, scores: dict[int, float]) -> list[tuple[int, bool]]:
    """Training replaced by fixed validation scores per depth (the head-only model scores 0.5)."""
    calls = []

    def fake_train(tail, x, y, xv, yv, views, ft, hp, class_weights):
        k = len(tail.blocks)
        calls.append((k, views))
        acc = scores[k] + (0.01 if views else 0.0)
        return {"val_accuracy": acc, "val_loss": 1.0, "best_epoch": 1, "epochs_run": 1, "history": [],
                "rank": (acc, -1.0)}

    monkeypatch.setattr(finetune, "train_tail", fake_train)
    monkeypatch.setattr(finetune, "head_only_score", lambda clf: (0.5, 1.0))
    return calls


def test_auto_picks_the_depth_with_the_best_validation_score(setup, monkeypatch):
    base, splits = setup
    calls = _scripted(monkeypatch, {1: 0.6, 2: 0.9, 3: 0.8})
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth="auto", paired_below_val=0))
    assert clf.fine_tune["chosen_k"] == 2 and clf.fine_tune["augmentation"] == "views"
    # Both augmentations at the first depth, then the chosen one; depth 3 tried because 2 beat 1.
    assert calls == [(1, False), (1, True), (2, True), (3, True)]
    assert [c["k"] for c in clf.fine_tune["candidates"]] == [0, 1, 1, 2, 3]


def test_auto_stops_when_a_deeper_cut_stops_helping_and_keeps_head_only_when_nothing_beats_it(setup, monkeypatch):
    base, splits = setup
    calls = _scripted(monkeypatch, {1: 0.4, 2: 0.3, 3: 0.99})
    clf = ImageClassifier.create(splits.train, splits.val, _options(base / "cache", depth="auto", paired_below_val=0))
    assert [k for k, _ in calls] == [1, 1, 2]  # 2 did not beat 1: 3 is not tried
    assert clf.fine_tune["chosen_k"] == 0 and clf.head_only is clf and clf.spec.weights.kind == "pypi"


def test_a_declined_single_split_fine_tune_ships_the_head_refitted_on_train_and_val(setup, monkeypatch):
    base, splits = setup
    _scripted(monkeypatch, {1: 0.1, 2: 0.1, 3: 0.1})  # nothing beats head only
    ft = FineTuneOptions(depth="auto", paired_below_val=0, epochs=2)
    opts = ClassifierOptions(model=ModelOptions(input_size=SIZE), threads=2, cache_dir=base / "cache", fine_tune=ft,
                             hparams=HParams(label_smoothing=0.0, refit_on_val=True))  # heads chosen by CV
    clf = ImageClassifier.create(splits.train, splits.val, opts)
    assert clf.fine_tune["path"] == "single split" and clf.fine_tune["chosen_k"] == 0
    assert clf.fine_tune["head_only"]["refit"] == "train + val" and clf.head_selection.refit_on_val
    train_only = ImageClassifier.create(splits.train, splits.val, replace(opts, hparams=HParams(label_smoothing=0.0)))
    assert not train_only.head_selection.refit_on_val and "refit" not in train_only.fine_tune["head_only"]
    assert not np.allclose(clf.head.coef_, train_only.head.coef_)


def test_cli_fine_tune_run_reports_head_only_and_fine_tuned(setup, tmp_path):
    base, _ = setup
    data = base / "data"
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--input-size", str(SIZE), "--formats", "onnx-fp32",
            "--threads", "2", "--cache-dir", str(base / "cache"), "--label-smoothing", "0", "--json"]
    result = CliRunner().invoke(cli, [*args, "--fine-tune", "1", "--fine-tune-epochs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    ft = metrics["fine_tune"]
    assert ft["requested"] == 1 and {"test_accuracy", "val_accuracy"} <= set(ft["head_only"]) <= set(ft["fine_tuned"])
    assert ft["fine_tuned"]["test_accuracy"] == metrics["test"]["accuracy"]
    assert metrics["timings"]["fine_tune_s"] > 0
    onnx = next(e for e in metrics["exports"] if e["format"] == "onnx-fp32")
    assert onnx["test_accuracy"] == metrics["test"]["accuracy"] and onnx["agreement_with_float"] == 1.0
    assert "Fine-tuning (requested 1)" in (tmp_path / "run" / "report.html").read_text()
    for bad, needle in (("99", "use at most 16"), ("deep", "or auto")):
        assert_one_line_error(edgemaker("train", str(data), "--out", str(tmp_path / "bad"), "--input-size", str(SIZE),
                                        "--cache-dir", str(base / "cache"), "--quiet", "--fine-tune", bad), "--fine-tune", needle)


def test_options_validate_depth():
    assert FineTuneOptions(depth="auto").depths == [0, 1, 2, 3]
    assert FineTuneOptions(depth=2).depths == [0, 2] and not FineTuneOptions(depth=0).active
    with pytest.raises(ValueError):
        FineTuneOptions(depth=-1)
    assert replace(FineTuneOptions(), depth="auto").active


# -- sounds: efficientnet_lite0_mel, activations per window, clip-level validation ----------------

def _sound_options(cache: Path, hparams: dict | None = None, **ft) -> ClassifierOptions:
    # A head stopped after one epoch leaves room on validation that fine-tuning must win back. The
    # augmented views are used (not chosen on validation: a near tie on these tones), so both modes run.
    return ClassifierOptions(model=ModelOptions(backbone="efficientnet_lite0_mel"),
                             hparams=HParams(**{"epochs": 1, "label_smoothing": 0.0, "weight_decay": 0.0, **(hparams or {})}),
                             augmentation=AugmentationOptions(enabled=True, views=1), threads=2, cache_dir=cache,
                             fine_tune=FineTuneOptions(**{"epochs": 3, **ft}))


@pytest.fixture(scope="module")
def sound_setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("finetune-sound")
    folder = make_tone_folder(base / "data", per_class=5, seed=1)
    return base, make_splits(validate_folder(folder), SplitOptions(train=0.5, val=0.3, test=0.2, seed=0))


@pytest.fixture(scope="module")
def sound_tuned(sound_setup):
    base, splits = sound_setup
    # cv_folds=0: the one-epoch softmax head chosen on the validation split (cross-validation would refit
    # the head for the folds' median epoch count, or pick the probe, and leave fine-tuning nothing to win).
    return _tuned(AudioClassifier, splits, _sound_options(base / "cache", hparams={"cv_folds": 0}, depth=1), 1)


def _clip_windows(samples, spec) -> list[np.ndarray]:
    from edgemaker.data.audio import clip_windows

    return [np.stack(list(clip_windows(s.path, spec.audio))) for s in samples]


def test_sound_fine_tune_caches_window_activations_and_changes_only_the_last_block(sound_setup, sound_tuned):
    _, splits = sound_setup
    ft = sound_tuned.fine_tune
    windows = sum(len(w) for w in _clip_windows(list(splits.train) + list(splits.val), sound_tuned.spec))
    assert ft["activations"]["computed"] > windows > len(splits.train) + len(splits.val)  # + augmented train windows
    assert ft["backbone"] == ft["head_only_backbone"] == "efficientnet_lite0_mel" and ft["cut"] == 15
    assert ft["fine_tuned"]["val_accuracy_onnx"] == ft["fine_tuned"]["val_accuracy"] >= ft["head_only"]["val_accuracy"]
    rank = [(c["val_accuracy"], -c["val_loss"]) for c in ft["candidates"]]
    assert max(rank[1:]) > rank[0]  # clip-level validation (accuracy, then loss) beat the head-only model
    before = load_state_dict(resolve_weights(sound_tuned.head_only.spec.weights))
    after = load_state_dict(resolve_weights(sound_tuned.spec.weights))
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed and all(k.startswith(("_blocks.15.", "_conv_head.", "_bn1.")) for k in changed), sorted(changed)[:5]
    assert not any("running_" in k for k in changed)


def test_sound_exports_carry_the_fine_tuned_weights(sound_setup, sound_tuned, tmp_path):
    import onnx
    import torch

    from edgemaker.backbones.runtime import make_session
    from edgemaker.export.quantization import Quantization
    from edgemaker.export.runtime import load_exported

    _, splits = sound_setup
    samples = list(splits.test) + list(splits.val)
    spec = sound_tuned.spec
    windows = _clip_windows(samples, spec)
    module = get_builder(spec.name)(spec, resolve_weights(spec.weights))  # strict load of the saved weights
    with torch.no_grad():
        emb = [module(torch.from_numpy(w)).numpy() for w in windows]
    in_memory = np.stack([sound_tuned.head.predict_proba(e).mean(0) for e in emb])  # a clip: mean over its windows
    exported = load_exported(sound_tuned.export(tmp_path / "fp32")).predict_files([s.path for s in samples])
    np.testing.assert_allclose(exported, in_memory, atol=2e-3)

    # The plain int8 file (no validation to refuse or re-fit it: this model is small and unsure).
    plain = copy.copy(sound_tuned)
    plain.val_samples, plain.train_samples, plain._sessions = (), (), {}
    int8 = plain.export(tmp_path / "int8", Quantization("int8", tuple(s.path for s in splits.train), 16))
    model = onnx.load(str(int8))
    model.graph.output.append(onnx.helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, None))
    session = make_session(model.SerializeToString(), 2)
    x = np.concatenate(windows)
    e_int8 = session.run(["embedding"], {session.get_inputs()[0].name: x})[0]
    e_tuned, e_frozen = np.concatenate(emb), sound_tuned.head_only.backbone.embed(x)
    assert np.abs(e_tuned - e_frozen).mean() > 0.01
    assert np.abs(e_int8 - e_tuned).mean() < np.abs(e_int8 - e_frozen).mean()  # the int8 file holds the new blocks


def test_sound_defaults_fine_tune_the_supported_backbone_against_the_best_head_only(sound_setup, monkeypatch):
    """aisfx (not fine-tunable) still competes head-only; auto tries depths on the best fine-tunable
    default by validation (efficientnet_lite0_mel or yamnet) and keeps the head-only winner when no
    depth beats it on validation."""
    base, splits = sound_setup
    options = replace(_sound_options(base / "cache", depth="auto", candidates=(1,), paired_below_val=0), model=ModelOptions())
    calls = _scripted(monkeypatch, {1: 0.9})  # depths beyond 1 are the image tests' (same code)
    monkeypatch.setattr(finetune, "head_only_score", lambda clf: (0.95, 1.0))
    clf = AudioClassifier.create(splits.train, splits.val, options)
    ft = clf.fine_tune
    tunable = [n for n in DEFAULT_AUDIO_BACKBONES if finetune.supported(get_spec(n))]
    assert set(tunable) == {"efficientnet_lite0_mel", "yamnet"}
    assert ft["backbone"] in tunable and ft["chosen_k"] == 0
    assert ft["cut"] == finetune.block_count(get_spec(ft["backbone"])) - 1
    assert calls == [(1, False), (1, True)]
    assert [c["k"] for c in ft["candidates"]] == [0, 1, 1] and ft["candidates"][0]["val_accuracy"] == 0.95
    assert clf.head_only is clf and clf.spec.name == ft["head_only_backbone"] and clf.spec.weights.kind == "pypi"
    assert set(clf.selection) == set(DEFAULT_AUDIO_BACKBONES)
    with pytest.raises(EdgemakerError, match="'aisfx' .* not supported") as info:
        AudioClassifier.create(splits.train, splits.val, replace(options, model=ModelOptions(backbone="aisfx")))
    assert "\n" not in str(info.value)
