"""The budget search's winner tried as its int8 file before export (tasks/budget_fallback.py): a refused
file passes the choice to the next candidate of the search's ranking, the attempts are recorded, and
when none passes within the cap the run ends in one error saying what to try."""

from __future__ import annotations

import copy

import pytest
from conftest import lite0_64_budget_search

from edgemaker.errors import EdgemakerError
from edgemaker.export import int8, session as session_module
from edgemaker.tasks import budget_fallback

MAX_FLASH, MAX_RAM = 80_000, 140_000  # a few Lite0 cuts at 64 px fit

pytest.importorskip("litert_torch")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One budget search on generated images (Lite0 cuts at 64 px only)."""
    return lite0_64_budget_search(tmp_path_factory.mktemp("budget_fallback"), 5, 6, MAX_FLASH, MAX_RAM,
                                  refit_on_val=True)


def _refuse_every_int8_file(m) -> None:
    """The int8 check's bounds above 100% agreement: every file it checks is refused."""
    m.setattr(int8, "MIN_AGREEMENT", 1.01)
    m.setattr(int8, "MIN_SHIPPABLE_AGREEMENT", 1.01)


def _shippable(searched, record, **kw):
    from edgemaker.progress import SilentProgress
    from edgemaker.tasks.classifier import ImageClassifier

    clf, _, splits, options, cache = searched
    return budget_fallback.shippable(ImageClassifier, clf, record, splits.train, splits.val, options,
                                     SilentProgress(), cache, True, **kw)


def test_a_refused_winner_passes_the_choice_to_the_next_candidate(searched, monkeypatch):
    record = copy.deepcopy(searched[1])
    order = budget_fallback.ranking(record)
    assert len(order) >= 2 and order[0].name == record.winner
    # the ranking: the search's CV finalists by CV first, then the rest by validation accuracy
    with_cv = [c for c in order[1:] if c.cv]
    assert order[1:len(with_cv) + 1] == with_cv
    real, checked = session_module.build_int8, []

    def refuse_the_first(exporter, model, *args, **kw):  # only the winner's file is refused
        checked.append(model.spec.name)
        with monkeypatch.context() as m:
            if len(checked) == 1:
                _refuse_every_int8_file(m)
            return real(exporter, model, *args, **kw)

    monkeypatch.setattr(session_module, "build_int8", refuse_the_first)
    first = record.winner
    clf = _shippable(searched, record)
    tried = record.int8_attempts
    assert [a["candidate"] for a in tried] == [order[0].name, order[1].name]
    assert tried[0]["refused"] and "int8" in tried[0]["refused"] and tried[0]["flash_bytes"] is None
    assert tried[1]["refused"] is None
    assert 0 < tried[1]["flash_bytes"] <= MAX_FLASH and 0 < tried[1]["ram_bytes"] <= MAX_RAM
    assert record.winner == order[1].name != first and clf.spec.name == order[1].backbone
    assert checked == [order[0].backbone, order[1].backbone]
    assert f"the int8 file of {first} was refused" in record.why and "test split was not used" in record.why
    notes = {c.name: c.note for c in record.candidates}
    assert "int8 check refused it" in notes[first] and "int8 file kept (try 2)" in notes[record.winner]
    assert record.to_dict()["int8_attempts"] == tried
    from edgemaker.evaluate.budget_report import report_section

    html = "".join(report_section(record.to_dict()))
    assert "Int8 files tried before export" in html and f"{first}: refused" in html


def test_no_int8_file_passing_is_one_error_naming_each_try(searched, monkeypatch):
    record = copy.deepcopy(searched[1])
    _refuse_every_int8_file(monkeypatch)
    order = budget_fallback.ranking(record)
    with pytest.raises(EdgemakerError, match="no int8 file passed within --max-flash 80.0 kB") as info:
        _shippable(searched, record, tries=2)
    message = str(info.value)
    assert "\n" not in message and "try a larger budget" in message
    assert f"{order[0].name} (" in message and f"{order[1].name} (" in message and f"{order[2].name} (" not in message
    assert [a["candidate"] for a in record.int8_attempts] == [order[0].name, order[1].name]


def test_a_file_measured_over_the_budget_is_refused(searched):
    clf, record, splits, _, _ = searched
    paths = [s.path for s in splits.train]
    ok = budget_fallback.try_int8(clf, record.winner, paths, "image", MAX_FLASH, MAX_RAM)
    assert ok["refused"] is None and ok["ram_bytes"] <= MAX_RAM
    over = budget_fallback.try_int8(clf, record.winner, paths, "image", ok["flash_bytes"] - 1, None)
    assert over["refused"].startswith("its int8 file measures over the budget: flash")
    assert over["flash_bytes"] == ok["flash_bytes"]
