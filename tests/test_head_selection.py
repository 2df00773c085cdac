"""Head selection on the validation split (--cv-folds 0): settings chosen, reproducible, explicit settings kept."""

from __future__ import annotations

import numpy as np
import pytest

from edgemaker.data.validate import Sample
from edgemaker.features.extract import Embeddings
from edgemaker.heads.selection import DEFAULTS, STAGES, select_head
from edgemaker.tasks.classifier import resolved_options, choose_head
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams


STRONG = dict(STAGES)["weight_decay"][-1]


class FakeHead:
    best_epoch_ = 1

    def __init__(self, settings):
        self.settings = settings


def test_staged_search_picks_the_best_validation_score_and_keeps_the_default_on_ties():
    # Validation accuracy by setting: clean views help, weight decay 0.1 helps, label smoothing ties.
    def score(head):
        s = head.settings
        return 0.5 + 0.2 * (s["views"] == "clean") + 0.1 * (s["weight_decay"] == STRONG), 1.0

    head, sel = select_head(FakeHead, score, {})
    assert sel.chosen == {"views": "clean", "weight_decay": STRONG, "label_smoothing": DEFAULTS["label_smoothing"]}
    assert head.settings == sel.chosen
    assert sel.searched == [name for name, _ in STAGES]
    # Staged, each candidate fitted once: the default, then every other value of each setting in turn.
    n = 1 + sum(len(values) - 1 for _, values in STAGES)
    assert len(sel.trials) == n
    assert len({tuple(sorted(t.settings.items())) for t in sel.trials}) == n
    record = sel.to_dict()
    assert record["chosen"] == sel.chosen and len(record["candidates"]) == n
    assert "views clean" in sel.summary()


def test_lower_validation_loss_breaks_an_accuracy_tie():
    head, sel = select_head(FakeHead, lambda h: (0.9, 0.5 if h.settings["weight_decay"] == STRONG else 0.7), {})
    assert sel.chosen["weight_decay"] == STRONG


def test_label_smoothing_ties_keep_the_default_whatever_the_loss():
    """Smoothing raises the log loss by design, so a lower loss without it is no evidence."""
    head, sel = select_head(FakeHead, lambda h: (0.9, 0.5 if h.settings["label_smoothing"] == 0.0 else 0.7), {})
    assert sel.chosen["label_smoothing"] == DEFAULTS["label_smoothing"]
    _, sel = select_head(FakeHead, lambda h: (0.95 if h.settings["label_smoothing"] == 0.0 else 0.9, 0.7), {})
    assert sel.chosen["label_smoothing"] == 0.0  # a better accuracy still wins


def test_given_settings_are_not_searched():
    seen = []

    def fit(settings):
        seen.append(dict(settings))
        return FakeHead(settings)

    _, sel = select_head(fit, lambda h: (float(h.settings["weight_decay"]), 0.0), {"weight_decay": 0.5, "views": "augmented"})
    assert all(s["weight_decay"] == 0.5 and s["views"] == "augmented" for s in seen)
    assert sel.searched == ["label_smoothing"] and sel.chosen["weight_decay"] == 0.5


def flipped_cue_set(n_per_class: int, seed: int, views: int = 2):
    """Two classes told apart only by the sign of feature 0 (say, which way an arrow points); every
    augmented view flips it (a mirror), so training on the views teaches the opposite cue."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["left", "right"], n_per_class)
    samples = [Sample(path=None, label=str(c), content=f"{seed}-{i}") for i, c in enumerate(labels)]
    rows, owner, view = [], [], []
    for i, label in enumerate(labels):
        sign = 1.0 if label == "left" else -1.0
        for v in range(views + 1):
            x = rng.normal(0, 1, 16)
            x[0] = (sign if v == 0 else -sign) * 2.0 + rng.normal(0, 0.3)
            rows.append(x)
            owner.append(i)
            view.append(v)
    emb = Embeddings(np.array(rows, np.float32), np.array(owner), np.array(view), len(samples))
    return samples, emb


def test_selection_trains_on_clean_embeddings_when_the_augmentation_erases_the_cue():
    train, x_train = flipped_cue_set(100, seed=0)
    val, x_val = flipped_cue_set(30, seed=1, views=0)
    options = ClassifierOptions(hparams=HParams(cv_folds=0, epochs=40, patience=10))
    head, sel = choose_head(options, train, val, x_train, x_val)
    scores = {t.settings["views"]: t.val_accuracy for t in sel.trials if t.settings["weight_decay"] == 1e-4
              and t.settings["label_smoothing"] == 0.1}
    assert scores["clean"] > scores["augmented"] + 0.3  # the views really hurt on validation
    assert sel.chosen["views"] == "clean"
    assert resolved_options(options, sel.chosen).augmentation.active_views == 0  # the int8 head refit follows
    # Forced augmentation is honoured even though it loses.
    forced = ClassifierOptions(hparams=options.hparams, augmentation=AugmentationOptions(enabled=True))
    _, sel_forced = choose_head(forced, train, val, x_train, x_val)
    assert {t.settings["views"] for t in sel_forced.trials} == {"augmented"}
    assert "views" not in sel_forced.searched


def test_selection_is_reproducible_and_honours_explicit_hparams():
    train, x_train = flipped_cue_set(20, seed=2)
    val, x_val = flipped_cue_set(10, seed=3, views=0)
    options = ClassifierOptions(hparams=HParams(cv_folds=0, epochs=20, patience=5))
    a, sel_a = choose_head(options, train, val, x_train, x_val)
    b, sel_b = choose_head(options, train, val, x_train, x_val)
    assert np.array_equal(a.coef_, b.coef_) and sel_a.chosen == sel_b.chosen
    assert [t.val_accuracy for t in sel_a.trials] == [t.val_accuracy for t in sel_b.trials]

    explicit = ClassifierOptions(hparams=HParams(cv_folds=0, epochs=20, patience=5, weight_decay=0.03, label_smoothing=0.05),
                                 augmentation=AugmentationOptions(enabled=False))
    head, sel = choose_head(explicit, train, val, x_train, x_val)
    assert sel.searched == [] and len(sel.trials) == 1
    assert (head.weight_decay, head.label_smoothing) == (0.03, 0.05)
    assert len(head.history_) <= 20


def test_no_validation_split_uses_the_defaults():
    train, x_train = flipped_cue_set(10, seed=4)
    empty = Embeddings(np.zeros((0, 16), np.float32), np.zeros(0, int), np.zeros(0, int), 0)
    head, sel = choose_head(ClassifierOptions(hparams=HParams(cv_folds=0, epochs=5)), train, [], x_train, empty)
    assert sel.searched == [] and sel.chosen == DEFAULTS and len(head.history_) == 5


@pytest.mark.parametrize("bad", [{"weight_decay": -1.0}, {"label_smoothing": 1.0}])
def test_bad_explicit_settings_are_refused(bad):
    with pytest.raises(ValueError):
        HParams(**bad)


def test_the_cli_records_the_choice_and_keeps_what_the_user_gave(tmp_path):
    import json

    from click.testing import CliRunner

    from conftest import make_image_folder
    from edgemaker.cli import cli

    data = make_image_folder(tmp_path / "data", per_class=10)
    runs = {}
    for name, extra in (("auto", []), ("given", ["--augment", "--label-smoothing", "0.05"])):
        result = CliRunner().invoke(cli, ["train", str(data), "--out", str(tmp_path / name), "--augment-views", "1",
                                          "--formats", "onnx-fp32", "--epochs", "20", "--cv-folds", "0", *extra],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())["training"]
        assert "head settings" in result.output  # the console line
    auto, given = runs["auto"]["head_selection"], runs["given"]["head_selection"]
    assert auto["searched"] == ["views", "weight_decay", "label_smoothing"] and len(auto["candidates"]) == 4
    assert runs["auto"]["augmented_views"] == (1 if auto["chosen"]["views"] == "augmented" else 0)
    assert given["searched"] == ["weight_decay"]
    assert all(c["views"] == "augmented" and c["label_smoothing"] == 0.05 for c in given["candidates"])
    assert runs["given"]["augmented_views"] == 1
    report = (tmp_path / "auto" / "report.html").read_text()
    assert auto["summary"].split(":")[0] in report and "Head settings tried" in report


def test_an_identical_search_is_remembered_and_any_change_searches_again(tmp_path):
    train, x_train = flipped_cue_set(30, seed=0)
    val, x_val = flipped_cue_set(10, seed=1, views=0)
    options = ClassifierOptions(hparams=HParams(cv_folds=0, epochs=10, patience=5), cache_dir=tmp_path)
    head, first = choose_head(options, train, val, x_train, x_val)
    assert not first.reused and len(first.trials) == 4
    again_head, again = choose_head(options, train, val, x_train, x_val)
    assert again.reused and again.chosen == first.chosen
    assert [t.to_dict() for t in again.trials] == [t.to_dict() for t in first.trials]
    assert "reused" in again.summary() and again.to_dict()["reused"] is True
    np.testing.assert_allclose(again_head.predict_proba(x_val.vectors), head.predict_proba(x_val.vectors), atol=1e-6)
    # Another seed, other embeddings or a corrupt memo file: a new search.
    other_seed = ClassifierOptions(hparams=HParams(cv_folds=0, epochs=10, patience=5, seed=1), cache_dir=tmp_path)
    assert not choose_head(other_seed, train, val, x_train, x_val)[1].reused
    x_shifted = Embeddings(x_train.vectors + 1e-3, x_train.owner, x_train.view, x_train.n_samples)
    assert not choose_head(options, train, val, x_shifted, x_val)[1].reused
    for f in (tmp_path / "head-selection").glob("*.json"):
        f.write_text("{not json")
    assert not choose_head(options, train, val, x_train, x_val)[1].reused
