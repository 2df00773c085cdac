"""report.html: one self-contained file (inline CSS, SVG and thumbnails) readable offline."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from ..atomic import write_text
from ..data.images import decode_image
from ..data.splits import Splits
from .metrics import Evaluation

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7fb}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin:32px 0 10px;border-bottom:1px solid #dde;padding-bottom:4px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border-radius:10px;padding:12px 16px;
box-shadow:0 1px 3px #0001;min-width:150px}.card b{display:block;font-size:24px}
table{border-collapse:collapse;background:#fff;margin:8px 0}td,th{border:1px solid #e3e5ee;padding:4px 8px;text-align:right}
th{background:#eef0f7}td:first-child,th:first-child{text-align:left}
.warn{background:#fff1f0;border:2px solid #e5484d;color:#8c1d20;padding:10px 14px;border-radius:8px;font-weight:600}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{margin:0;background:#fff;padding:6px;border-radius:8px;
width:124px;font-size:12px}.thumbs img{width:112px;height:112px;object-fit:cover;display:block}
.muted{color:#667}svg text{font:11px system-ui,sans-serif}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _line_chart(title: str, series: dict[str, list[float | None]], y_max: float | None = None) -> str:
    w, h, pad = 460, 220, 36
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return ""
    n = max(len(vs) for vs in series.values())
    top = y_max if y_max is not None else max(values) * 1.05 or 1.0
    colors = ["#3366cc", "#e5484d", "#2a9d8f", "#f4a261"]
    parts = [f'<svg width="{w}" height="{h}" role="img" aria-label="{_e(title)}"><text x="{pad}" y="14">{_e(title)}</text>',
             f'<line x1="{pad}" y1="{h-pad}" x2="{w-8}" y2="{h-pad}" stroke="#999"/>',
             f'<line x1="{pad}" y1="20" x2="{pad}" y2="{h-pad}" stroke="#999"/>',
             f'<text x="2" y="24">{top:.2f}</text><text x="2" y="{h-pad}">0</text>',
             f'<text x="{w-60}" y="{h-pad+16}">epoch {n}</text>']
    for k, (name, vs) in enumerate(series.items()):
        pts = [(pad + (w - pad - 8) * (i / max(n - 1, 1)), h - pad - (h - pad - 20) * (v / top))
               for i, v in enumerate(vs) if v is not None]
        if pts:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline fill="none" stroke="{colors[k % 4]}" stroke-width="2" points="{path}"/>')
            parts.append(f'<text x="{pad + 10 + 90 * k}" y="{h - 6}" fill="{colors[k % 4]}">■ {_e(name)}</text>')
    return "".join(parts) + "</svg>"


def _confusion(ev: Evaluation) -> str:
    cm = ev.confusion_matrix
    peak = max(int(cm.max()), 1)
    rows = ["<table><tr><th>true \\ predicted</th>" + "".join(f"<th>{_e(c)}</th>" for c in ev.classes) + "</tr>"]
    for i, c in enumerate(ev.classes):
        cells = []
        for j in range(len(ev.classes)):
            v = int(cm[i, j])
            alpha = v / peak
            color = f"rgba(51,102,204,{alpha:.2f})" if i == j else f"rgba(229,72,77,{alpha:.2f})"
            fg = "#fff" if alpha > 0.5 else "#000"
            cells.append(f'<td style="background:{color};color:{fg}">{v}</td>')
        rows.append(f"<tr><th>{_e(c)}</th>{''.join(cells)}</tr>")
    return "".join(rows) + "</table>"


def _thumb(path: Path) -> str:
    try:
        im = decode_image(path.read_bytes(), min_side=112)
    except Exception:  # a thumbnail must never break the report
        return ""
    im.thumbnail((224, 224))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def write_report(target: Path, metrics: dict, splits: Splits, test_eval: Evaluation, max_thumbs: int = 60) -> None:
    hist = metrics["training"]["history"]
    test = metrics["test"]
    exports = metrics["exports"]
    data = metrics["data"]
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
           f"<title>edgemaker report</title><style>{_CSS}</style></head><body><main>",
           f"<h1>Image classifier report</h1><p class=muted>{_e(data['root'])} · {_e(metrics['created'])} · "
           f"edgemaker {_e(metrics['edgemaker_version'])}</p>"]
    out += [f'<p class=warn role=alert>⚠ {_e(w)}</p>' for w in metrics["warnings"]]
    best = max(exports, key=lambda e: (e["quantization"] != "none", -e["size_bytes"])) if exports else None
    cards = [("test accuracy (float)", f"{test['accuracy']:.1%}"), ("classes", len(metrics["classes"])),
             ("train / val / test", " / ".join(str(v) for v in metrics["splits"].values()))]
    if best:
        cards.append((f"{best['format']} accuracy", f"{best['test_accuracy']:.1%}"))
        cards.append((f"{best['format']} size", _mb(best["size_bytes"])))
    out.append("<div class=cards>" + "".join(f"<div class=card>{_e(k)}<b>{_e(v)}</b></div>" for k, v in cards) + "</div>")

    out.append("<h2>Exported files</h2><p class=muted>Each file was re-loaded and run on the test split by its own "
               "runtime; latency is one image (batch 1) on this machine.</p>")
    out.append(_table(["format", "file", "size", "test accuracy", "agrees with float", "latency (ms)"],
                      [[e["format"], e["path"], _mb(e["size_bytes"]), f"{e['test_accuracy']:.4f}",
                        f"{e['agreement_with_float']:.1%}", f"{e['latency_ms']:.2f}"] for e in exports]))

    out.append("<h2>Dataset</h2>")
    out.append(f"<p>{_e(metrics['split_how'])}. Backbone <b>{_e(metrics['backbone']['name'])}</b> "
               f"({metrics['backbone']['input_size']} px, licence: {_e(metrics['backbone']['licence'])}).</p>")
    counts = {name: {} for name, _ in splits.items()}
    for name, samples in splits.items():
        for s in samples:
            counts[name][s.label] = counts[name].get(s.label, 0) + 1
    out.append(_table(["class", "train", "val", "test"],
                      [[c, *(counts[n].get(c, 0) for n in ("train", "val", "test"))] for c in metrics["classes"]]))
    if data["skipped"]:
        out.append(f"<details><summary>{len(data['skipped'])} files skipped</summary>")
        out.append(_table(["file", "reason"], [[s["path"], s["reason"]] for s in data["skipped"][:500]]))
        out.append("</details>")

    out.append("<h2>Training</h2>")
    out.append(f"<p>Best epoch {metrics['training']['best_epoch']} of {metrics['training']['epochs_run']} run "
               f"(early stopping on validation, best epoch restored); {metrics['training']['augmented_views']} "
               "augmented views per training image.</p>")
    out.append(_line_chart("accuracy", {"train": [h["train_accuracy"] for h in hist],
                                        "val": [h["val_accuracy"] for h in hist]}, 1.0))
    out.append(_line_chart("loss", {"train": [h["train_loss"] for h in hist], "val": [h["val_loss"] for h in hist]}))

    out.append(f"<h2>Test results</h2><p>Accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f} on "
               f"{test['samples']} images (float model).</p>")
    out.append(_confusion(test_eval))
    out.append(_table(["class", "precision", "recall", "F1", "support"],
                      [[c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
                       for c, m in test["per_class"].items()]))
    wrong = [i for i in range(len(splits.test)) if test_eval.y_pred[i] != test_eval.y_true[i]]
    out.append(f"<h2>Misclassified test images ({len(wrong)})</h2>")
    if wrong:
        figs = []
        for i in wrong[:max_thumbs]:
            s = splits.test[i]
            pred = test_eval.classes[test_eval.y_pred[i]]
            conf = test_eval.probabilities[i].max()
            figs.append(f'<figure><img alt="{_e(s.path.name)}" src="{_thumb(s.path)}"><figcaption>true <b>{_e(s.label)}</b>'
                        f"<br>predicted <b>{_e(pred)}</b> ({conf:.0%})<br><span class=muted>{_e(s.path.name)}</span>"
                        "</figcaption></figure>")
        out.append("<div class=thumbs>" + "".join(figs) + "</div>")
    else:
        out.append("<p>None: every test image was classified correctly.</p>")
    out.append("</main></body></html>")
    write_text(target, "\n".join(out))
