"""The budget search's winner tried as the int8 file it will ship, before the run exports it: built
and checked on validation by the one int8 flow (export/int8.py), then measured (file size, TFLite
Micro's arena). When that file is refused, or measures over the budget, the next candidate in the
search's own ranking is built and tried, at most TRIES files in all.

Why: the int8 check can refuse the most accurate float candidate (cars-dev10 at 256 KB / 128 KB:
mobilenet_v1_025_k11@112 answered differently from its float model on 27% of validation) and a
candidate predicted to fit can measure over; a run that asked for a budget should still end with an
int8 file that fits when another candidate gives one. Every check reads train and validation only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence

from ..errors import EdgemakerError
from ..evaluate.budget_report import human
from ..progress import Progress
from .budget_cv import cv_rank
from .budget_finetune import rank
from .options import ClassifierOptions

TRIES = 3  # int8 files built at most (the winner's included): each costs a quantization and a check


def ranking(record) -> list:
    """The winner, then the other fitting frozen candidates in the order the search ranked them:
    the cross-validated finalists by CV, then the rest by screening validation accuracy. A
    from-scratch candidate that lost is not in it (retraining it costs its epochs again)."""
    winner = next(c for c in record.candidates if c.name == record.winner)
    frozen = [c for c in record.candidates if c.fits and c.width is None and c.val_accuracy is not None]
    by_cv = sorted((c for c in frozen if c.cv), key=cv_rank, reverse=True)
    rest = sorted((c for c in frozen if not c.cv), key=rank, reverse=True)
    return [winner] + [c for c in by_cv + rest if c is not winner]


def try_int8(clf, name: str, train_paths: Sequence, modality: str, max_flash: int | None,
             max_ram: int | None) -> dict:
    """{candidate, flash_bytes, ram_bytes, ram_source, refused (None when it passes), ...}: the
    tflite-int8 file the export stage would write, built in a temporary folder and measured."""
    from ..export.device import budget
    from ..export.stage import frontend_in_graph, quantization_for

    frontend = frontend_in_graph("tflite-int8", modality)
    entry: dict = {"candidate": name, "flash_bytes": None, "ram_bytes": None, "ram_source": None, "refused": None}
    with tempfile.TemporaryDirectory(prefix="edgemaker-int8-") as tmp:
        session = clf.export_session(tmp)
        path = session.export("tflite", quantization_for("tflite-int8", list(train_paths), modality), frontend)
        choice = session.int8_choice.get("tflite" + ("" if frontend else "-nofrontend"), {})
        if choice.get("plain_val_agreement") is not None:
            entry["val_agreement"] = choice["plain_val_agreement"]
        if path is None:
            entry["refused"] = choice["refused"]
            entry["short"] = (f"int8 check refused it: agrees with float on {choice['plain_val_agreement']:.0%} "
                              "of validation")
            return entry
        b = budget(path)  # TFLite Micro's measured arena when it runs the file, else the estimate
    entry.update(flash_bytes=b.flash_bytes, ram_bytes=b.ram_bytes, ram_source=b.ram_source)
    over = []
    if max_flash is not None and b.flash_bytes > max_flash:
        over.append(f"flash {human(b.flash_bytes)} > {human(max_flash)}")
    if max_ram is not None and b.ram_bytes > max_ram:
        over.append(f"RAM {human(b.ram_bytes)} > {human(max_ram)}")
    if over:
        entry["refused"] = entry["short"] = f"its int8 file measures over the budget: {'; '.join(over)}"
    return entry


def shippable(cls, clf, record, train, validation, options: ClassifierOptions, progress: Progress, cache,
              refit_on_val: bool, tries: int = TRIES):
    """The first Classifier in `ranking(record)` whose int8 file passes; record.int8_attempts lists
    each file tried and record.winner names the one kept. Raises EdgemakerError when none of the
    first `tries` passes."""
    from .budget_search import build

    attempts = record.int8_attempts
    order = ranking(record)[:tries]
    first = order[0]
    train_paths = [s.path for s in train]
    for i, c in enumerate(order):
        t0 = time.perf_counter()
        if i:
            progress.log(f"budget: trying the next candidate, {c.name}")
            clf = build(cls, c, train, validation, options, progress, cache, refit_on_val)
        entry = try_int8(clf, c.name, train_paths, cls.modality, record.max_flash, record.max_ram)
        entry["seconds"] = round(time.perf_counter() - t0, 1)  # the head refit (after the first), int8 file, check
        attempts.append(entry)
        if entry["refused"] is None:
            progress.log(f"budget: the int8 file of {c.name} passes: flash {human(entry['flash_bytes'])}, RAM "
                         f"{human(entry['ram_bytes'])} ({entry['ram_source']})")
            c.note = "; ".join(filter(None, [c.note, "int8 file kept" + (f" (try {i + 1})" if i else "")]))
            if i:
                record.winner = c.name
                record.why += (f"; the int8 file of {first.name} was refused ({attempts[0]['short']}), so the next "
                               f"candidate in that ranking whose int8 file passes, {c.name}, was kept")
                progress.log(f"budget: kept {c.name} after {i} int8 file{'s' if i > 1 else ''} refused")
            return clf
        c.note = "; ".join(filter(None, [c.note, entry["short"]]))
        progress.log(f"budget: {c.name} {entry['short']}")
    limits = " ".join(f"--max-{what} {human(n)}" for what, n in (("flash", record.max_flash), ("ram", record.max_ram))
                      if n is not None)
    raise EdgemakerError(
        f"no int8 file passed within {limits}: "
        + "; ".join(f"{a['candidate']} ({a['short']})" for a in attempts)
        + "; try a larger budget, or train without one and use the fp32 file")
