"""`edgemaker data inspect`: what is in a data folder and what is wrong with it, before training.

Reads through the validation pass (corrupt, truncated, empty files; exact duplicates; the same
bytes under two labels), then fingerprints every usable file for near-duplicates (resized,
re-encoded or gain-changed copies), and adds the class balance. Nothing is written to the folder.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...progress import Progress, SilentProgress
from ..folders import SPLITS
from ..splits import TINY_CLASS
from .common import load, rel
from .fingerprint import SOUND_BITS, close_pairs, image_fingerprint, sound_fingerprint, to_matrix

# Near-duplicate thresholds (Hamming bits). Images: pHash + dHash (128 bits) <= 16 catches the
# re-crops, recolours and re-encodes in Caltech-101 (one flagged pair there is two look-alike lamps
# shot the same way: worth a look too; --near-bits changes it); sounds: <= 10% of the
# bits (gain-changed or re-encoded copies differ by 0-2 of 976, distinct ESC-10 clips by > 200).
IMAGE_NEAR_BITS = 16
SOUND_NEAR_FRACTION = 0.10


def _fingerprint(modality: str, path: Path) -> dict | str:
    try:
        return (image_fingerprint if modality == "image" else sound_fingerprint)(path)
    except Exception as exc:  # validated files decode; anything else is worth a line, not a crash
        return f"{type(exc).__name__}: {exc}"


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


class _Groups:
    """Union-find over indices: near-duplicate pairs -> clusters."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def inspect_folder(root: Path, task: str | None = None, progress: Progress | None = None,
                   tiny: int = TINY_CLASS, near_bits: int | None = None, workers: int | None = None,
                   label_issues: bool = False, backbone: str | None = None) -> dict:
    """Everything `data inspect` reports, as a JSON-ready dict (paths relative to `root`).
    `label_issues`: also rank likely label errors on `backbone`'s embeddings (data/tools/label_issues.py)."""
    progress = progress or SilentProgress()
    report = load(root, task, progress)  # a folder or an fsspec URL (data/sources.py)
    r = lambda p: rel(report, p)  # noqa: E731
    modality = report.modality
    samples = report.samples
    counts = report.counts()
    for label in report.declared - set(counts):
        counts[label] = 0
    counts = dict(sorted(counts.items()))

    # Fingerprints (and header facts) of every usable file, in threads.
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    bar = progress.bar(len(samples), "fingerprint")
    infos: list[dict | str] = []
    with ThreadPoolExecutor(workers) as pool:
        for info in pool.map(lambda s: _fingerprint(modality, s.path), samples):
            infos.append(info)
            bar.update()
    bar.close()
    failed = [{"path": r(s.path), "reason": info} for s, info in zip(samples, infos) if isinstance(info, str)]

    # Near-duplicates: close fingerprints between different contents.
    if modality == "image":
        idx = [i for i, info in enumerate(infos) if isinstance(info, dict)]
        limit = IMAGE_NEAR_BITS if near_bits is None else near_bits
        pairs = []
        if idx:
            ph = to_matrix([infos[i]["phash"] for i in idx])
            dh = to_matrix([infos[i]["dhash"] for i in idx])
            close = {(a, b): d for a, b, d in close_pairs(ph, limit)}
            pairs = [(a, b, close[a, b] + d) for a, b, d in close_pairs(dh, limit)
                     if (a, b) in close and close[a, b] + d <= limit]
    else:
        idx = [i for i, info in enumerate(infos) if isinstance(info, dict) and info["fingerprint"]]
        limit = int(SOUND_BITS * SOUND_NEAR_FRACTION) if near_bits is None else near_bits
        pairs = close_pairs(to_matrix([infos[i]["fingerprint"] for i in idx]), limit) if idx else []
    groups = _Groups(len(idx))
    worst: dict[int, int] = {}
    for a, b, d in pairs:
        groups.union(a, b)
    clusters: dict[int, list[int]] = {}
    for k in range(len(idx)):
        clusters.setdefault(groups.find(k), []).append(k)
    for a, b, d in pairs:
        root_k = groups.find(a)
        worst[root_k] = max(worst.get(root_k, 0), d)
    near = []
    for key, members in clusters.items():
        if len(members) < 2:
            continue
        files = [samples[idx[k]] for k in members]
        labels = sorted({s.label for s in files})
        splits = sorted({s.split for s in files if s.split})
        near.append({"files": [{"path": r(s.path), "label": s.label, "split": s.split} for s in files],
                     "classes": labels, "cross_label": len(labels) > 1, "cross_split": len(splits) > 1,
                     "max_distance_bits": worst.get(key, 0)})
    near.sort(key=lambda g: (not g["cross_label"], not g["cross_split"], g["files"][0]["path"]))

    # Exact duplicates (same class) and the same bytes under two labels, from the validation pass.
    split_of = {s.path: s.split for s in samples}
    dup_groups: dict[Path, list[Path]] = {}
    for dropped, kept in report.duplicates:
        dup_groups.setdefault(kept, []).append(dropped)
    exact = [{"kept": r(kept), "copies": [r(p) for p in copies],
              "leaks_across_splits": any(_split_of(report, p) != split_of.get(kept) for p in copies)}
             for kept, copies in sorted(dup_groups.items())]
    cross = [{"classes": labels, "paths": [r(p) for p in paths]} for labels, paths in report.conflicts]
    handled = {p for group in report.duplicates for p in group} | {p for _, ps in report.conflicts for p in ps}
    unusable = [{"path": r(p), "reason": why, "kind": why.split(" (")[0]}
                for p, why in report.skipped if p not in handled]

    # Facts: formats, sizes or durations and rates.
    good = [info for info in infos if isinstance(info, dict)]
    facts: dict = {}
    if modality == "image":
        facts["formats"] = dict(Counter(i["format"] for i in good).most_common())
        facts["modes"] = dict(Counter(i["mode"] for i in good).most_common())
        facts["width"] = _spread([i["width"] for i in good])
        facts["height"] = _spread([i["height"] for i in good])
    else:
        facts["formats"] = dict(Counter(f"{i['format']}/{i['subtype']}" for i in good).most_common())
        facts["sample_rates"] = {str(k): v for k, v in Counter(i["sample_rate"] for i in good).most_common()}
        facts["channels"] = {str(k): v for k, v in Counter(i["channels"] for i in good).most_common()}
        facts["duration_s"] = _spread([i["duration_s"] for i in good])
    facts["extensions"] = dict(Counter(s.path.suffix.lower() for s in samples).most_common())

    nonzero = {c: n for c, n in counts.items() if n}
    balance = None
    if nonzero:
        small, large = min(nonzero, key=nonzero.get), max(nonzero, key=nonzero.get)
        balance = {"smallest": {"class": small, "count": nonzero[small]},
                   "largest": {"class": large, "count": nonzero[large]},
                   "ratio": round(nonzero[large] / nonzero[small], 2)}
    per_split = None
    if report.presplit:
        per_split = {sp: {c: sum(1 for s in samples if s.label == c and s.split == sp) for c in counts}
                     for sp in SPLITS}
    result = {
        "root": str(report.root), "modality": modality,
        "layout": "presplit" if report.presplit else "class-folders",
        "usable": len(samples), "classes": counts, "per_split": per_split, "facts": facts,
        "balance": balance,
        "problems": {
            "unusable": unusable,
            "exact_duplicates": exact,
            "cross_label_duplicates": cross,
            "near_duplicates": near,
            "tiny_classes": [{"class": c, "count": n} for c, n in counts.items() if 0 < n < tiny],
            "empty_classes": [c for c, n in counts.items() if n == 0],
            "silent": [{"path": r(p), "note": n} for p, n in report.notes],
            "not_fingerprinted": failed,
        },
        "thresholds": {"tiny_class": tiny, "near_duplicate_bits": limit,
                       "fingerprint": "pHash+dHash, 128 bits" if modality == "image"
                       else f"log-mel sign bits, {SOUND_BITS} bits"},
    }
    if label_issues:
        from .label_issues import folder_label_issues

        result["label_issues"] = folder_label_issues(report, r, backbone, progress)
    return result


def _split_of(report, path: Path) -> str | None:
    if not report.presplit:
        return None
    from ..folders import SPLIT_NAMES

    return SPLIT_NAMES.get(path.relative_to(report.root).parts[0].lower())


def summary_text(result: dict, limit: int = 15) -> str:
    """The stdout table: counts, facts, then each kind of problem with up to `limit` examples."""
    noun = "images" if result["modality"] == "image" else "sound clips"
    counts, per_split = result["classes"], result["per_split"]
    lines = [f"{result['root']}: {result['usable']} usable {noun} in {sum(1 for n in counts.values() if n)} classes"
             f" ({result['layout']})"]
    width = max([len(c) for c in counts] + [5])
    head = f"  {'class':<{width}}  {'files':>6}"
    if per_split:
        head += "".join(f"  {sp:>6}" for sp in SPLITS)
    lines.append(head)
    for c, n in counts.items():
        row = f"  {c:<{width}}  {n:>6}"
        if per_split:
            row += "".join(f"  {per_split[sp][c]:>6}" for sp in SPLITS)
        lines.append(row)
    f = result["facts"]
    lines.append("formats: " + ", ".join(f"{k} {v}" for k, v in f["formats"].items()))
    if result["modality"] == "image":
        if f["width"]:
            lines.append(f"size: width {f['width']['min']}..{f['width']['max']} (median {f['width']['median']:g}), "
                         f"height {f['height']['min']}..{f['height']['max']} (median {f['height']['median']:g})")
        lines.append("modes: " + ", ".join(f"{k} {v}" for k, v in f["modes"].items()))
    else:
        d = f["duration_s"]
        if d:
            lines.append(f"duration: {d['min']:.2f}..{d['max']:.2f} s (median {d['median']:.2f} s); sample rates: "
                         + ", ".join(f"{k} Hz x{v}" for k, v in f["sample_rates"].items())
                         + "; channels: " + ", ".join(f"{k} x{v}" for k, v in f["channels"].items()))
    b = result["balance"]
    if b:
        lines.append(f"balance: largest {b['largest']['class']} ({b['largest']['count']}), smallest "
                     f"{b['smallest']['class']} ({b['smallest']['count']}), ratio {b['ratio']:g}")
    p = result["problems"]

    def section(title: str, items: list, fmt) -> None:
        lines.append(f"{title}: {len(items)}")
        lines.extend(f"  {fmt(x)}" for x in items[:limit])
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more (--json or --out for all)")

    lines.append("problems:")
    section("unusable files", p["unusable"], lambda x: f"{x['path']}: {x['reason']}")
    section("exact duplicates (kept once)", p["exact_duplicates"],
            lambda x: f"{x['kept']} = {', '.join(x['copies'])}" + (" [across splits]" if x["leaks_across_splits"] else ""))
    section("same content under two labels", p["cross_label_duplicates"],
            lambda x: f"{' / '.join(x['classes'])}: {', '.join(x['paths'])}")
    n_cross = sum(g["cross_label"] for g in p["near_duplicates"])
    n_split = sum(g["cross_split"] for g in p["near_duplicates"])
    section(f"near-duplicate groups ({n_cross} across labels, {n_split} across splits)", p["near_duplicates"],
            lambda g: ", ".join(f"{x['path']}" for x in g["files"]) + (" [different labels]" if g["cross_label"] else "")
            + (" [across splits]" if g["cross_split"] else ""))
    section(f"tiny classes (< {result['thresholds']['tiny_class']})", p["tiny_classes"],
            lambda x: f"{x['class']}: {x['count']}")
    section("empty class folders", p["empty_classes"], str)
    if result["modality"] == "audio":
        section("silent clips", p["silent"], lambda x: x["path"])
    if p["not_fingerprinted"]:
        section("not fingerprinted", p["not_fingerprinted"], lambda x: f"{x['path']}: {x['reason']}")
    if "label_issues" in result:
        from ...evaluate.label_issues import summary_lines

        lines.extend(summary_lines(result["label_issues"], limit))
    return "\n".join(lines)
