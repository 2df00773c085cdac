"""The budget search's record as the report shows it (a frontier plot, the ladder, every candidate):
it reads metrics.json's "budget_search" record and calls no training code."""

from __future__ import annotations


def _acc(a: float | None) -> str:
    return "" if a is None else f"{a:.4f}"


def _cv(cv: dict | None) -> str:
    return f"{cv['mean']:.4f} (sd {cv['std']:.4f}, {cv['folds']} folds)" if cv else ""


def human(n: int | None) -> str:
    if n is None:
        return "unlimited"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def frontier_svg(record: dict, width: int = 640, height: int = 360) -> str:
    """Validation accuracy against predicted flash (log scale) for every candidate trained (a
    BudgetRecord's dict): fitting candidates filled, the Pareto frontier joined, the winner ringed,
    the flash budget dashed. Hand-written SVG: no plotting dependency."""
    import math

    pts = [c for c in record["candidates"] if c["val_accuracy"] is not None]
    if not pts:
        return ""
    left, right, top, bottom = 60, 20, 20, 50
    fl = [c["predicted"]["flash_bytes"] for c in pts]
    lo, hi = math.log10(min(fl)) - 0.05, math.log10(max(fl + [record["max_flash_bytes"] or 0])) + 0.05
    amin = max(0.0, math.floor(min(c["val_accuracy"] for c in pts) * 10) / 10)

    def x(v: float) -> float:
        return left + (math.log10(v) - lo) / (hi - lo) * (width - left - right)

    def y(a: float) -> float:
        return top + (1 - (a - amin) / max(1e-9, 1 - amin)) * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="validation accuracy against predicted flash" font-family="sans-serif" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="none" stroke="#999"/>']
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= math.log10(v) <= hi:
                parts.append(f'<text x="{x(v):.1f}" y="{height - bottom + 15}" text-anchor="middle">{human(v)}</text>')
    for i in range(6):
        a = amin + (1 - amin) * i / 5
        parts.append(f'<text x="{left - 5}" y="{y(a) + 4:.1f}" text-anchor="end">{a:.2f}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
                 'predicted int8 flash (log scale); filled: fits the budget; squares: small_cnn</text>')
    parts.append(f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(top + height - bottom) / 2})">validation accuracy</text>')
    if record["max_flash_bytes"]:
        bx = x(record["max_flash_bytes"])
        parts.append(f'<line x1="{bx:.1f}" y1="{top}" x2="{bx:.1f}" y2="{height - bottom}" stroke="#c00" '
                     'stroke-dasharray="4 3"/>')
    frontier, best = [], -1.0
    for c in sorted(pts, key=lambda c: c["predicted"]["flash_bytes"]):
        if c["val_accuracy"] > best:
            frontier.append(c)
            best = c["val_accuracy"]
    parts.append('<polyline fill="none" stroke="#36c" points="' + " ".join(
        f"{x(c['predicted']['flash_bytes']):.1f},{y(c['val_accuracy']):.1f}" for c in frontier) + '"/>')
    for c in pts:
        fill = "#36c" if c["fits"] else "#fff"
        cx, cy = x(c["predicted"]["flash_bytes"]), y(c["val_accuracy"])
        title = (f"<title>{c['name']}: val {c['val_accuracy']:.3f}, flash {human(c['predicted']['flash_bytes'])}, "
                 f"RAM {human(c['predicted']['ram_bytes'])}</title>")
        if c["width"] is None:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" stroke="#36c">{title}</circle>')
        else:
            parts.append(f'<rect x="{cx - 3.5:.1f}" y="{cy - 3.5:.1f}" width="7" height="7" fill="{fill}" '
                         f'stroke="#393">{title}</rect>')
        if c["name"] == record["winner"]:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="8" fill="none" stroke="#c00" stroke-width="2"/>')
            parts.append(f'<text x="{cx + 10:.1f}" y="{cy - 8:.1f}">{c["name"]}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def report_section(record: dict) -> list[str]:
    """HTML for the report: the winner, the real file beside the prediction, the frontier, the table."""
    from html import escape

    def row(c: dict) -> str:
        p = c["predicted"]
        acc = _acc(c["val_accuracy"])
        return (f"<tr><td>{escape(c['name'])}{' (winner)' if c['name'] == record['winner'] else ''}</td>"
                f"<td>{human(p['flash_bytes'])}</td><td>{human(p['ram_bytes'])}</td><td>{p['macs'] / 1e6:.1f} M</td>"
                f"<td>{'yes' if c['fits'] else 'no'}</td><td>{acc}</td><td>{_cv(c.get('cv'))}</td>"
                f"<td>{escape(c.get('note') or '')}</td></tr>")

    out = [f"<h2>Device budget search</h2><p>Budget: flash {human(record['max_flash_bytes'])}, RAM "
           f"{human(record['max_ram_bytes'])}. Chosen: <b>{escape(record['winner'] or '')}</b>, "
           f"{escape(record['why'])} (search {record['seconds']:.1f} s).</p>"]
    conf = record.get("confirmed")
    if conf:
        out.append(f"<p>Measured on the real int8 file {escape(conf['file'])}: flash {human(conf['flash_bytes'])} "
                   f"(predicted {human(conf['predicted']['flash_bytes'])}), RAM {human(conf['ram_bytes'] or 0)} "
                   f"(predicted {human(conf['predicted']['ram_bytes'])}), {(conf['macs'] or 0) / 1e6:.1f} M MACs; "
                   f"{'fits' if conf['fits'] else 'does NOT fit'} the budget.</p>")
    tried = record.get("int8_attempts") or []

    def attempt(a: dict) -> str:
        if a["refused"]:
            return f"{escape(a['candidate'])}: refused ({escape(a.get('short') or a['refused'])})"
        return f"{escape(a['candidate'])}: kept ({human(a['flash_bytes'])} flash, {human(a['ram_bytes'])} RAM)"

    if len(tried) > 1 or any(a["refused"] for a in tried):
        out.append("<p>Int8 files tried before export, in the search's ranking: "
                   + "; ".join(attempt(a) for a in tried) + ".</p>")
    ft = record.get("fine_tune")
    if ft and ft["finalists"]:
        out.append("<p>Finalists fine-tuned (kept only if validation improves): " + "; ".join(
            f"{escape(e['name'])} last {e['blocks']} blocks on the {e['targets']}: val {e['head_only_val_accuracy']:.3f}"
            f" -> {e['val_accuracy']:.3f}{' (kept)' if e['kept'] else ''}" for e in ft["finalists"])
            + f" ({ft['seconds']:.1f} s).</p>")
    out.append(frontier_svg(record))
    out.append("<table><tr><th>budget (flash / RAM)</th><th>best candidate trained here</th><th>val accuracy</th></tr>"
               + "".join(f"<tr><td>{human(r['max_flash_bytes'])} / {human(r['max_ram_bytes'])}</td>"
                         f"<td>{escape(r['best'] or 'none trained fits')}</td>"
                         f"<td>{_acc(r['val_accuracy'])}</td></tr>"
                         for r in record["ladder"]) + "</table>")
    out.append("<details><summary>Every candidate (predicted before training)</summary><table><tr><th>candidate</th>"
               "<th>flash</th><th>RAM</th><th>MACs</th><th>fits</th><th>val accuracy</th><th>CV over train + val</th><th>note</th></tr>"
               + "".join(row(c) for c in record["candidates"]) + "</table></details>")
    return out
