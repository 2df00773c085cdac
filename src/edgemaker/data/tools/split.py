"""`edgemaker data split`: stratified, seeded train/val/test folders; `--group-by` keeps every
file of a group (a recording, a speaker) on one side, so near-identical files cannot leak."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from ...errors import DataError
from ...progress import Progress
from ..folders import SPLITS
from ..validate import Sample
from .common import by_class, inner_path, load, rel, require_samples
from .output import check_out, unique_destinations, write_folder


def group_key(pattern: re.Pattern[str], name: str) -> str | None:
    m = pattern.search(name)
    if not m:
        return None
    return m.group(1) if pattern.groups else m.group(0)


def _fractions(val: float, test: float) -> dict[str, float]:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"--val {val} --test {test}: each must be within 0..1 and together below 1 "
                        "(e.g. --val 0.1 --test 0.1)")
    return {"train": 1 - val - test, "val": val, "test": test}


def _split_files(classes: dict[str, list[Sample]], frac: dict[str, float], rng: random.Random) -> dict[Sample, str]:
    """Per class: shuffle, then round(n * fraction) to val and test (at least one each when asked)."""
    wanted = [sp for sp in ("val", "test") if frac[sp] > 0]
    short = {c: len(v) for c, v in classes.items() if len(v) < 1 + len(wanted)}
    if short:
        c, n = next(iter(short.items()))
        raise DataError(f"class '{c}' has {n} usable file(s); train{''.join('/' + w for w in wanted)} needs at "
                        f"least {1 + len(wanted)} per class: add files or set --val 0 / --test 0")
    side: dict[Sample, str] = {}
    for label in sorted(classes):
        files = list(classes[label])
        rng.shuffle(files)
        n, start = len(files), 0
        for sp in wanted:
            k = min(max(1, round(n * frac[sp])), n - start - 1)
            for s in files[start:start + k]:
                side[s] = sp
            start += k
        for s in files[start:]:
            side[s] = "train"
    return side


def _split_groups(groups: dict[str, list[Sample]], classes: list[str], frac: dict[str, float],
                  rng: random.Random) -> dict[Sample, str]:
    """Greedy stratified group assignment: largest groups first, each to the side whose per-class
    counts are furthest below target (the idea of scikit-learn's StratifiedGroupKFold)."""
    totals = Counter(s.label for g in groups.values() for s in g)
    sides = [sp for sp in SPLITS if frac[sp] > 0]
    have = {sp: Counter() for sp in sides}
    keys = sorted(groups)
    rng.shuffle(keys)
    keys.sort(key=lambda k: -len(groups[k]))  # stable: ties keep the seeded order
    side: dict[Sample, str] = {}
    for key in keys:
        g = Counter(s.label for s in groups[key])

        def cost(sp: str) -> tuple[float, float]:
            # How far each class would end up from its target on every side (squared, per class size);
            # first make sure each side gets each class once (a class missing on a side costs most).
            err, missing = 0.0, 0
            for c in classes:
                for other in sides:
                    n = have[other][c] + (g[c] if other == sp else 0)
                    err += ((n - frac[other] * totals[c]) / max(totals[c], 1)) ** 2
                    missing += n == 0 and totals[c] > 0
            return missing, err

        best = min(sides, key=cost)
        have[best].update(g)
        for s in groups[key]:
            side[s] = best
    return side


def split_folder(root: Path, out: Path, val: float = 0.1, test: float = 0.1, seed: int = 0,
                 group_by: str | None = None, link: bool = False, task: str | None = None,
                 progress: Progress | None = None) -> dict:
    """Write `out/{train,val,test}/<class>/...`; return the summary (counts per side and class)."""
    frac = _fractions(val, test)
    pattern = None
    if group_by:
        try:
            pattern = re.compile(group_by)
        except re.error as exc:
            raise DataError(f"--group-by {group_by!r}: not a valid regular expression ({exc})") from None
    check_out(root, out)
    report = load(Path(root), task, progress)
    require_samples(report)
    classes = by_class(report.samples)
    empty = sorted(report.declared - set(classes))
    if empty:
        raise DataError(f"{report.root}: class folder '{empty[0]}' has no usable files; add some or remove it")
    rng = random.Random(seed)
    unmatched = 0
    if pattern is None:
        side = _split_files(classes, frac, rng)
        how = f"stratified per class, seed {seed}"
    else:
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in report.samples:
            key = group_key(pattern, s.path.name)
            if key is None:
                unmatched += 1
                key = f"\0file:{s.path}"  # no match: the file is its own group
            groups[key].append(s)
        if unmatched == len(report.samples):
            raise DataError(f"--group-by {group_by!r}: matches no file name (e.g. {report.samples[0].path.name}); "
                            "fix the pattern, e.g. '^(\\d+-\\d+)' for ESC-50 source ids")
        side = _split_groups(groups, sorted(classes), frac, rng)
        n_groups = {c: len({k for k, g in groups.items() if any(s.label == c for s in g)}) for c in classes}
        for c in sorted(classes):
            got = {sp for s, sp in side.items() if s.label == c}
            need = [sp for sp in SPLITS if frac[sp] > 0]
            if set(need) - got:
                raise DataError(f"class '{c}' has {n_groups[c]} group(s) under --group-by {group_by!r}; "
                                f"it cannot be on all of {'/'.join(need)}: lower --val/--test to 0, add "
                                "recordings, or loosen the pattern")
        how = f"stratified by groups ({len(groups)} groups, {unmatched} files without a match), seed {seed}"
    ordered = sorted(report.samples, key=lambda s: (SPLITS.index(side[s]), s.label, str(s.path)))
    files = []
    for sp in SPLITS:
        part = [s for s in ordered if side[s] == sp]
        files += [(src, f"{sp}/{dst}") for src, dst in
                  unique_destinations((s.path, s.label, inner_path(report, s.path)) for s in part)]
    counts = {sp: {c: sum(1 for s in ordered if side[s] == sp and s.label == c) for c in sorted(classes)}
              for sp in SPLITS}
    written = write_folder(out, files, link)
    return {"source": str(report.root), "out": str(out), "how": how, "seed": seed,
            "fractions": frac, "group_by": group_by, "counts": counts, "written": written,
            "files": {rel(report, s.path): side[s] for s in ordered},
            "pooled_existing_split": report.presplit}
