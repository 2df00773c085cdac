"""What `compare` and `curve` write into --out: results.json (top-level "kind": the web runs page lists
any <folder>/results.json that has one), table.txt, table.md, plot.svg and one offline index.html.
Every file is written atomically; the data folder is never written."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from ..atomic import write_json, write_text
from ..errors import EdgemakerError
from .table import Table

FILES = ("results.json", "table.txt", "table.md", "plot.svg", "index.html")
_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.num,th.num{text-align:right}p.note{color:#555;font-size:13px}
.verdict{background:#eef6ee;border-left:4px solid #2ca02c;padding:8px 12px}"""


def check_out(data_dir: Path, out_dir: Path) -> Path:
    """--out must be a folder outside the data folder (which is only read)."""
    from ..data.sources import data_root

    data, out = data_root(data_dir).resolve(), Path(out_dir).resolve()
    if out == data or data in out.parents:
        raise EdgemakerError(f"--out {out_dir}: is inside the data folder {data_dir}, which is never written; "
                             "choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise EdgemakerError(f"--out {out_dir}: exists and is not a folder; choose another --out")
    return out


def write_outputs(out_dir: Path, result: dict, table: Table, title: str, sentences: Sequence[str],
                  svg: str, notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write the five files; `sentences` are the findings (verdict first), `notes` how it was measured."""
    assert result.get("kind") in ("compare", "curve"), "results.json needs its kind"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "\n".join([title, "", table.text(), "", *sentences, *(["", *notes] if notes else [])]) + "\n"
    md = "\n".join([f"# {title}", "", table.markdown(), "", *(f"{s}\n" for s in sentences),
                    *(f"_{n}_\n" for n in notes)]) + "\n"
    e = html.escape
    page = "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        *(f'<p class="{"verdict" if i == 0 else "finding"}">{e(s)}</p>' for i, s in enumerate(sentences)),
        table.html(), svg,
        *(f'<p class="note">{e(n)}</p>' for n in notes),
        '<p class="note">Files beside this page: results.json (every number), table.txt, table.md, plot.svg.</p>',
        "</body></html>", ""])
    paths = {name: out_dir / name for name in FILES}
    write_json(paths["results.json"], result)
    write_text(paths["table.txt"], text)
    write_text(paths["table.md"], md)
    write_text(paths["plot.svg"], svg)
    write_text(paths["index.html"], page)
    return paths
