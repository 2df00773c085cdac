"""Head choice by grouped, stratified k-fold CV: folds keep groups whole, the one-standard-error rule,
the record in metrics.json and the report, and the logistic-regression probe exported like any head."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from edgemaker.data.validate import Sample
from edgemaker.features.extract import Embeddings
from edgemaker.heads.cv import cross_validate_head, make_folds, one_standard_error, simplicity
from edgemaker.heads.probe import ProbeHead
from edgemaker.tasks.classifier import choose_head
from edgemaker.tasks.head_choice import REFIT_SEEDS, head_for, source_groups
from edgemaker.tasks.options import ClassifierOptions, HParams


def clip_set(seed: int = 0, per_class: int = 12, classes=("dog", "rain", "siren")):
    """Sound-like samples: each clip has 1-4 windows (rows) and clips come from recordings named
    like ESC-50 ('<fold>-<source>-<take>.wav'); 3 clips share each recording."""
    rng = np.random.default_rng(seed)
    samples, rows, owner, view = [], [], [], []
    for c, label in enumerate(classes):
        for i in range(per_class):
            source = f"1-{c}{i // 3:03d}"
            samples.append(Sample(path=Path(f"/data/{label}/{source}-{'ABC'[i % 3]}-{c}.wav"), label=label,
                                  content=f"{seed}-{c}-{i}"))
            for _ in range(int(rng.integers(1, 5))):
                x = rng.normal(0, 1, 8)
                x[c] += 3.0
                rows.append(x)
                owner.append(len(samples) - 1)
                view.append(0)
    emb = Embeddings(np.array(rows, np.float32), np.array(owner), np.array(view), len(samples))
    return samples, emb


class RecordingHead(ProbeHead):
    """A probe that remembers which rows it was fitted on (to check fold hygiene)."""

    fitted_rows: list[np.ndarray] = []

    def fit(self, X, y, validation=None, callback=None):
        RecordingHead.fitted_rows.append(np.asarray(X).copy())
        return super().fit(X, y, validation, callback)


def test_no_clip_windows_and_no_source_id_in_two_folds():
    samples, emb = clip_set()
    labels = [s.label for s in samples]
    groups = source_groups(samples, r"^(\d+-\d+)")
    assert len(set(groups)) == len(samples) // 3  # three clips per recording
    folds, how = make_folds(labels, groups, 4, seed=0)
    assert len(folds) == 4 and "4-fold" in how
    held = np.concatenate([te for _, te in folds])
    assert sorted(held.tolist()) == list(range(len(samples)))  # every sample held out exactly once
    for train_idx, test_idx in folds:
        assert not {groups[i] for i in train_idx} & {groups[i] for i in test_idx}
        assert {labels[i] for i in test_idx} == set(labels)  # stratified: every class in every fold
    # Rows (windows) follow their clip: the rows a fold trains on never include a held-out clip's window.
    RecordingHead.fitted_rows = []
    result = cross_validate_head(lambda: RecordingHead(C=1.0), emb, labels, folds)
    for (train_idx, test_idx), fitted in zip(folds, RecordingHead.fitted_rows):
        held_rows = emb.vectors[np.isin(emb.owner, test_idx)]
        assert len(fitted) == np.isin(emb.owner, train_idx).sum()
        assert not (fitted[:, None, :] == held_rows[None]).all(-1).any()
    assert result.oof.shape == (len(samples), 3) and np.allclose(result.oof.sum(1), 1, atol=1e-5)
    assert result.mean > 0.8  # the cue is strong; out-of-fold predictions find it
    # Without a pattern each clip is its own group (its windows still stay together).
    assert len(set(source_groups(samples, None))) == len(samples)


def test_too_few_groups_for_two_folds_gives_no_folds():
    labels = ["a", "a", "b", "b"]
    folds, how = make_folds(labels, ["g1", "g1", "g2", "g3"], 5, seed=0)
    assert folds == [] and "no cross-validation" in how
    folds, how = make_folds(labels * 3, [f"g{i}" for i in range(12)], 5, seed=0)
    assert len(folds) == 5 and "asked" not in how


def test_one_standard_error_prefers_the_simpler_candidate_within_the_spread():
    probe, soft_clean, soft_aug = {"head": "probe", "C": 1.0}, {"head": "softmax", "views": "clean"}, \
        {"head": "softmax", "views": "augmented"}
    keys = [simplicity(s) for s in (probe, soft_clean, soft_aug)]
    assert keys[0] < keys[1] < keys[2]
    # The augmented head is best, but the probe is within one standard error of it: the probe wins.
    assert one_standard_error([0.90, 0.91, 0.92], [0.03, 0.03, 0.03], keys) == 0
    # Outside the spread the better mean wins.
    assert one_standard_error([0.80, 0.85, 0.92], [0.01, 0.01, 0.01], keys) == 2
    # Equally simple candidates: the better mean, then the lower loss.
    assert one_standard_error([0.9, 0.9], [0.0, 0.0], [(0, 0), (0, 0)], [0.5, 0.3]) == 1


def test_cv_chooses_on_train_plus_val_and_exposes_out_of_fold_probabilities(tmp_path):
    samples, emb = clip_set(seed=1, per_class=15)
    n_train = 36
    train, val = samples[:n_train], samples[n_train:]
    keep = emb.owner < n_train
    x_train = Embeddings(emb.vectors[keep], emb.owner[keep], emb.view[keep], n_train)
    x_val = Embeddings(emb.vectors[~keep], emb.owner[~keep] - n_train, emb.view[~keep], len(val))
    options = ClassifierOptions(hparams=HParams(epochs=15, patience=5, cv_folds=3, refit_on_val=True), cache_dir=tmp_path)
    head, sel = choose_head(options, train, val, x_train, x_val)
    assert sel.folds == 3 and sel.oof_probabilities.shape == (len(samples), 3)
    heads = {c.settings["head"] for c in sel.candidates}
    assert heads == {"probe", "softmax"}
    assert type(head).__name__ == ("ProbeHead" if sel.chosen["head"] == "probe" else "SoftmaxHead")
    assert "train + val" in sel.refit
    again_head, again = choose_head(options, train, val, x_train, x_val)
    assert again.reused and again.chosen == sel.chosen
    np.testing.assert_allclose(again.oof_probabilities, sel.oof_probabilities, atol=1e-4)
    np.testing.assert_allclose(again_head.coef_, head.coef_, atol=1e-6)
    # A head kind the user gave is the only kind tried; by default (the API) validation stays held out.
    given = ClassifierOptions(hparams=HParams(epochs=15, patience=5, cv_folds=3, head="softmax"), cache_dir=tmp_path)
    head, sel = choose_head(given, train, val, x_train, x_val)
    assert {c.settings["head"] for c in sel.candidates} == {"softmax"}
    assert "refitted on train for" in sel.refit and len(head.history_) == sel.epochs
    # The softmax refit is the mean of REFIT_SEEDS fits' weights (seeds random_state + 1000 i): one
    # linear layer whose logits are the fits' mean logits.
    assert f"the mean of {REFIT_SEEDS} seeds' weights" in sel.refit and REFIT_SEEDS > 1
    rows = Embeddings(x_train.vectors, x_train.owner, x_train.view, n_train)
    y = np.array([train[i].label for i in rows.owner])
    fits = []
    for i in range(REFIT_SEEDS):
        one = head_for(given, sel.chosen, sel.epochs)
        one.random_state += 1000 * i
        fits.append(one.fit(rows.vectors, y))
    np.testing.assert_allclose(head.coef_, np.mean([f.coef_ for f in fits], axis=0), atol=1e-6)
    np.testing.assert_allclose(head.intercept_, np.mean([f.intercept_ for f in fits], axis=0), atol=1e-6)
    assert not np.allclose(fits[0].coef_, fits[1].coef_)  # the seeds give different fits


def test_the_probe_folds_its_standardisation_into_one_linear_layer():
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, (60, 6)).astype(np.float32)
    y = np.array(["a", "b", "c"] * 20)
    X[np.arange(60), np.arange(60) % 3] += 4
    probe = ProbeHead(C=0.5).fit(X, y)
    from sklearn.linear_model import LogisticRegression

    scaled = (X - probe.mean_) / probe.scale_
    reference = LogisticRegression(C=0.5, max_iter=300).fit(scaled, y)
    np.testing.assert_allclose(probe.predict_proba(X), reference.predict_proba(scaled), atol=1e-4)
    binary = ProbeHead(C=0.5).fit(X[y != "c"], y[y != "c"])
    ref2 = LogisticRegression(C=0.5, max_iter=300).fit((X[y != "c"] - binary.mean_) / binary.scale_, y[y != "c"])
    np.testing.assert_allclose(binary.predict_proba(X), ref2.predict_proba((X - binary.mean_) / binary.scale_), atol=1e-4)


def test_the_cli_records_the_cv_table_and_exports_the_probe(tmp_path):
    from click.testing import CliRunner

    from edgemaker.cli import cli

    data = make_image_folder(tmp_path / "data", per_class=10)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(out), "--augment-views", "1", "--epochs", "15",
                                      "--cv-folds", "3", "--formats", "onnx-fp32,onnx-int8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "cross-validation" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    cv = metrics["training"]["cv_selection"]
    assert metrics["training"]["head_selection"] is None
    assert cv["folds"] == 3 and "one-standard-error" in cv["rule"]
    assert "train + val" in cv["refit"] and metrics["val"]["held_out"] is False
    cands = cv["candidates"]
    assert {c["head"] for c in cands} == {"probe", "softmax"}
    for c in cands:  # mean and std are those of the recorded fold accuracies
        assert len(c["fold_accuracies"]) == 3
        assert c["mean"] == pytest.approx(np.mean(c["fold_accuracies"]), abs=1e-4)
        assert c["std"] == pytest.approx(np.std(c["fold_accuracies"], ddof=1), abs=1e-4)
    # The recorded choice is what the rule gives on the recorded numbers.
    i = one_standard_error([c["mean"] for c in cands], [c["std"] / np.sqrt(3) for c in cands],
                           [simplicity(c) for c in cands], [c["mean_loss"] for c in cands])
    assert all(cands[i][k] == v for k, v in cv["chosen"].items())
    report = (out / "report.html").read_text()
    assert "CV accuracy (mean)" in report and cv["summary"].split(":")[0] in report



def test_the_probe_head_is_exported_through_the_same_files(tmp_path):
    from edgemaker import AugmentationOptions, ImageClassifier, ImageClassifierOptions, Quantization, load_image_folder
    from edgemaker.export.runtime import ExportedModel
    from edgemaker.tasks.head_choice import head_for

    splits = load_image_folder(make_image_folder(tmp_path / "data", per_class=10))
    options = ImageClassifierOptions(augmentation=AugmentationOptions(views=1), cache_dir=tmp_path / "cache",
                                     hparams=HParams(head="probe", cv_folds=3))
    clf = ImageClassifier.create(splits.train, splits.val, options)
    assert isinstance(clf.head, ProbeHead) and clf.head_selection.chosen["head"] == "probe"
    samples, oof, classes = clf.out_of_fold
    assert samples == [*splits.train, *splits.val] and oof.shape == (len(samples), 3) and classes == clf.classes
    assert (oof.argmax(1) == [classes.index(s.label) for s in samples]).mean() > 0.8
    assert clf.options.hparams.probe_c == clf.head_selection.chosen["C"]  # later fits (int8 head) reuse it
    assert head_for(clf.options).C == clf.head.C
    paths = [s.path for s in splits.test]
    fp32 = ExportedModel(clf.export(tmp_path / "out"))
    np.testing.assert_allclose(fp32.predict_files(paths), clf.head.predict_proba(clf.embed(splits.test).vectors),
                               atol=1e-4)
    int8 = ExportedModel(clf.export(tmp_path / "out", Quantization.for_int8([s.path for s in splits.train])))
    assert (int8.predict_files(paths).argmax(1) == fp32.predict_files(paths).argmax(1)).mean() >= 0.9


def test_large_sets_use_three_folds_unless_the_user_says():
    from edgemaker.tasks.options import LARGE_FOR_CV

    assert HParams().folds_for(LARGE_FOR_CV - 1) == 5 and HParams().folds_for(LARGE_FOR_CV) == 3
    assert HParams(cv_folds=5).folds_for(10 * LARGE_FOR_CV) == 5 and HParams(cv_folds=0).folds_for(10) == 0
    with pytest.raises(ValueError):
        HParams(cv_folds=-1)
    with pytest.raises(ValueError, match="regular expression"):
        HParams(cv_group_by="(")


def test_patience_is_counted_in_passes_over_the_samples():
    """On augmented views an epoch passes over every sample 1 + views times (its clean row and each
    view's, every one a row of its own), so the head waits that many times fewer epochs: the same
    passes as a head on clean rows."""
    from edgemaker.tasks.head_choice import passes_per_epoch
    from edgemaker.tasks.options import AugmentationOptions

    options = ClassifierOptions(hparams=HParams(patience=15))
    assert options.augmentation.views == 2
    assert passes_per_epoch(options, "clean") == 1 and passes_per_epoch(options, "augmented") == 3
    four = replace(options, augmentation=AugmentationOptions(views=4))
    off = replace(options, augmentation=AugmentationOptions(enabled=False))
    assert passes_per_epoch(four, "augmented") == 5 and passes_per_epoch(off, "augmented") == 1
    assert head_for(options, {"views": "clean"}).patience == 15
    assert head_for(four, {"views": "augmented"}, passes=5).patience == 3
    augmented = head_for(options, {"views": "augmented"}, passes=passes_per_epoch(options, "augmented"))
    assert augmented.patience == 5
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 8)).astype(np.float32), np.repeat(["a", "b", "c"], 20)
    augmented.fit(x, y, validation=(x[:30], rng.permutation(y)[:30]))  # noise: the best epoch comes early
    assert len(augmented.history_) == augmented.best_epoch_ + 5 < augmented.epochs


def test_the_cv_search_waits_the_same_passes_on_clean_and_augmented_rows(tmp_path, monkeypatch):
    import edgemaker.tasks.head_choice as head_choice

    samples, emb = clip_set(seed=2, per_class=15)
    n_train = 36
    keep = emb.owner < n_train
    rows, owner = emb.vectors[keep], emb.owner[keep]
    noise = np.random.default_rng(0).normal(0, 0.3, (2, *rows.shape)).astype(np.float32)
    x_train = Embeddings(np.concatenate([rows, rows + noise[0], rows + noise[1]]), np.tile(owner, 3),
                         np.repeat([0, 1, 2], len(rows)), n_train)  # each clip's windows, then 2 noisy views
    x_val = Embeddings(emb.vectors[~keep], emb.owner[~keep] - n_train, emb.view[~keep], len(samples) - n_train)
    made = []

    class Recording(head_choice.SoftmaxHead):
        def fit(self, X, y, validation=None, **kw):
            if validation is not None:  # a fold's fit (the refit has no early stopping)
                made.append((len(X), self.patience))
            return super().fit(X, y, validation=validation, **kw)

    monkeypatch.setattr(head_choice, "SoftmaxHead", Recording)
    options = ClassifierOptions(hparams=HParams(epochs=30, patience=6, cv_folds=3, head="softmax"), cache_dir=tmp_path)
    choose_head(options, samples[:n_train], samples[n_train:], x_train, x_val)
    # Fold fits on clean rows wait 6 epochs; on the augmented rows (3 per window) 2.
    assert {p for _, p in made} == {6, 2}
    assert min(n for n, p in made if p == 2) > 2 * max(n for n, p in made if p == 6)
