"""report.html: one self-contained file (inline CSS, SVG and thumbnails) readable offline."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

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
.thumbs figure.clip{width:236px}.thumbs img.spec{width:224px;height:96px;object-fit:fill}.thumbs audio{width:224px;height:32px}
.muted{color:#667}svg text{font:11px system-ui,sans-serif}
.thumbs figure.cam{width:236px}.thumbs figure.cam img{display:inline-block;margin-right:0}
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


def cv_section(cv: dict | None) -> list[str]:
    """The cross-validation table: every candidate's fold accuracies, mean and spread, the rule, the choice."""
    if not cv:
        return []
    keys = [k for k in ("head", "views", "C", "weight_decay", "label_smoothing")
            if any(k in c for c in cv["candidates"])]
    rows = [[*(c.get(k, "") for k in keys), f"{c['mean']:.4f}", f"{c['std']:.4f}",
             " ".join(f"{a:.3f}" for a in c["fold_accuracies"]), f"{c['seconds']:.1f}",
             "chosen" if all(c.get(k) == v for k, v in cv["chosen"].items()) else ""] for c in cv["candidates"]]
    return [f"<p>{_e(cv['summary'])}. Folds: {_e(cv['how'])}. Rule: {_e(cv['rule'])}.</p>",
            _table([*keys, "CV accuracy (mean)", "std", "per fold", "seconds", ""], rows)]


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


def _audio_figure(path: Path) -> str:
    """An inline player (first 10 s, 16 kHz mono) and a small log-mel spectrogram of a clip."""
    try:
        import soundfile as sf
        from PIL import Image

        from ..backbones.frontends import YAMNET_LOGMEL
        from ..data.audio import stream_mono

        samples, total = [], 0
        for block in stream_mono(path, 16000):
            samples.append(block)
            total += len(block)
            if total >= 160000:
                break
        wave = np.concatenate(samples)[:160000]
        buf = io.BytesIO()
        sf.write(buf, wave, 16000, format="WAV", subtype="PCM_16")
        audio = base64.b64encode(buf.getvalue()).decode()
        padded = np.pad(wave, (0, max(0, YAMNET_LOGMEL.win_length - len(wave))))
        mel = YAMNET_LOGMEL.compute(padded).T[::-1]  # (mels, frames), low frequencies at the bottom
        lo, hi = np.percentile(mel, 2), np.percentile(mel, 99.5)
        level = np.clip((mel - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.stack([level ** 0.6, level ** 1.5, 0.35 + 0.4 * level - 0.35 * level ** 2], -1)
        img = Image.fromarray((rgb * 255).astype(np.uint8)).resize((224, 96))
        png = io.BytesIO()
        img.save(png, "PNG")
        spec = base64.b64encode(png.getvalue()).decode()
    except Exception:  # a figure must never break the report
        return ""
    return (f'<img class=spec alt="spectrogram of {_e(path.name)}" src="data:image/png;base64,{spec}">'
            f'<audio controls preload=none src="data:audio/wav;base64,{audio}"></audio>')


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


def _vs_float(e: dict) -> str:
    vs = e.get("vs_float")
    if not vs or e.get("quantization") == "none":
        return "–"
    low, high = vs["loss_interval"]
    return (f"{vs['lost']} / {vs['gained']} (p = {vs['p_value']:.2f}; loss {100 * low:.1f} to {100 * high:.1f} points)"
            if vs["lost"] + vs["gained"] else "0 / 0")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def fine_tune_section(ft: dict | None) -> list[str]:
    """--fine-tune: what was chosen, head-only vs fine-tuned accuracy, the extra time, every depth tried."""
    if not ft:
        return []
    before, after = ft["head_only"], ft["fine_tuned"]

    def acc(d: dict, key: str) -> str:
        return f"{d[key]:.4f}" if d.get(key) is not None else "–"

    paired = ft.get("paired")
    lost = "it did not beat it across folds" if paired else "no depth beat it on validation"
    chosen = (f"the last <b>{ft['chosen_k']}</b> of {ft['blocks']} blocks fine-tuned ({_e(ft['augmentation'])} inputs)"
              if ft["chosen_k"] else f"<b>head only</b> ({lost})")
    out = [f"<p>Fine-tuning (requested {_e(ft['requested'])}): {chosen}; {ft['extra_s']:.1f} s extra, "
           f"{ft['activations']['computed']} cut activations computed, {ft['activations']['reused']} reused.</p>"]
    if ft.get("path"):
        out.append(f"<p class=muted>Path: {_e(ft['path'])} — {_e(ft['path_reason'])}.</p>")
    if ft.get("refit"):
        r = ft["refit"]
        out.append(f"<p class=muted>The chosen recipe was refitted on {_e(r['on'])} ({r['samples']} samples, "
                   f"{r['epochs']} epochs), so that validation stays held out for the int8 checks.</p>")
    elif before.get("refit"):
        out.append(f"<p class=muted>The head-only model's head was refitted on {_e(before['refit'])}.</p>")
    out.append(_table(["model", "val accuracy", "test accuracy"],
                      [["head only", acc(before, "val_accuracy"), acc(before, "test_accuracy")],
                       ["chosen", acc(after, "val_accuracy"), acc(after, "test_accuracy")]]))
    if ft["candidates"]:
        out.append(_table(["blocks fine-tuned", "inputs", "val accuracy", "val loss", "best epoch", "seconds"],
                          [[c["k"], c["augmentation"], f"{c['val_accuracy']:.4f}", f"{c['val_loss']:.4f}",
                            c.get("best_epoch", "–"), f"{c['seconds']:.1f}"] for c in ft["candidates"]]))
    if paired:
        out.append(f"<p>Paired comparison on {paired['folds']} folds of train+val ({paired['samples']} samples): "
                   f"<b>{_e(paired['decision'])}</b> — {_e(paired['reason'])}.</p>")
        for d in paired["depths"]:
            rows = [[r["fold"] + 1, r["fit"], r["held_out"], f"{r['head_only']:.4f}",
                     "not run" if r["gain"] is None else f"{r['fine_tuned']:.4f}",
                     "–" if r["gain"] is None else f"{r['gain']:+.4f}", f"{r.get('seconds', 0.0):.1f}"]
                    for r in d["folds"]]
            tuned = "–" if d["mean_fine_tuned"] is None else f"{d['mean_fine_tuned']:.4f}"
            rows.append(["mean", "", "", f"{d['mean_head_only']:.4f}", tuned,
                         f"{d['mean_gain']:+.4f} (std {d['std_gain']:.4f}, SE {d['se_gain']:.4f})", ""])
            ps = d.get("paired_samples")
            counts = (f" Of {ps['n']} held-out samples fine-tuning fixed {ps['fixed']} and broke {ps['broken']} "
                      f"(mean gain {ps['mean_gain']:+.4f}, SE {ps['se_gain']:.4f}).") if ps else ""
            out.append(f"<p class=muted>Last {d['k']} blocks: {_e(d['reason'])}.{counts}</p>")
            out.append(_table(["fold", "fit", "held out", "head only", "fine-tuned", "gain", "seconds"], rows))
    return out


def _explanations_section(record: dict | None, overlays: dict[int, str], splits: Splits) -> list[str]:
    """Grad-CAM of misclassified test images (evaluate/gradcam.py): the photo and its heat map side by side."""
    if not record:
        return []
    out = ["<h2>Where the float model looked (Grad-CAM)</h2>"]
    if record.get("skipped"):
        return out + [f"<p class=muted>Not shown: {_e(record['skipped'])}.</p>"]
    out.append(f"<p class=muted>Heat (red) marks what raised the score of the class the float model predicted, at "
               f"the backbone's last convolution ({_e(record['layer'])}); {record['explained']} of "
               f"{record['misclassified']} misclassified test images, most confident first, "
               f"{record['seconds']:.1f} s. Heat on the background, a border or a mark rather than the object "
               "suggests a shortcut in the training data.</p>")
    figs = []
    for item in record["images"]:
        uri = overlays.get(item["index"])
        if not uri:
            continue
        path = splits.test[item["index"]].path
        figs.append(f'<figure class=cam><img alt="{_e(item["path"])}" src="{_thumb(path)}">'
                    f'<img alt="Grad-CAM of {_e(item["path"])} for {_e(item["predicted"])}" src="{uri}">'
                    f"<figcaption>true <b>{_e(item['label'])}</b>, predicted <b>{_e(item['predicted'])}</b> "
                    f"({item['confidence']:.0%})<br><span class=muted>{_e(item['path'])}</span></figcaption></figure>")
    return out + ["<div class=thumbs>" + "".join(figs) + "</div>"]


def _label_issues_section(record: dict | None, root: str, audio: bool, max_thumbs: int) -> list[str]:
    """Training files whose label the other training files contradict (evaluate/label_issues.py)."""
    if not record:
        return []
    noun = "clips" if audio else "images"
    out = [f"<h2>Likely label errors in the training data ({record['count']})</h2>"]
    if record.get("skipped"):
        return out + [f"<p class=muted>Not sought: {_e(record['skipped'])}.</p>"]
    out.append(f"<p class=muted>Train + validation {noun} whose given label gets a low probability from models that "
               f"never saw them ({_e(record['probabilities'])}; {_e(record['method'])}; out-of-fold accuracy "
               f"{record['out_of_fold_accuracy']:.3f}, {record['seconds']:.1f} s). Look at them: a wrong label "
               "teaches the model the wrong thing; `edgemaker data inspect --label-issues` lists them for any folder."
               "</p>")
    if not record["issues"]:
        return out + [f"<p>None found among {record['samples']} {noun}.</p>"]
    from ..data.sources import data_root

    base = data_root(root)
    figs = []
    for x in record["issues"][:max_thumbs]:
        path = base / x["path"]
        media = _audio_figure(path) if audio else f'<img alt="{_e(x["path"])}" src="{_thumb(path)}">'
        figs.append(f'<figure{" class=clip" if audio else ""}>{media}<figcaption>labelled <b>{_e(x["label"])}</b> '
                    f"({x['label_probability']:.0%})<br>looks like <b>{_e(x['suggested'])}</b> "
                    f"({x['suggested_probability']:.0%})<br><span class=muted>{_e(x['path'])}</span></figcaption></figure>")
    out.append("<div class=thumbs>" + "".join(figs) + "</div>")
    if len(record["issues"]) > max_thumbs:
        out.append(f"<p class=muted>... and {len(record['issues']) - max_thumbs} more in metrics.json.</p>")
    return out


def write_report(target: Path, metrics: dict, splits: Splits, test_eval: Evaluation, max_thumbs: int = 40,
                 explanations: dict[int, str] | None = None) -> None:
    hist = metrics["training"]["history"]
    test = metrics["test"]
    exports = metrics["exports"]
    data = metrics["data"]
    audio = metrics["task"] == "audio_classification"
    noun = "clips" if audio else "images"
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
           f"<title>edgemaker report</title><style>{_CSS}</style></head><body><main>",
           f"<h1>{'Sound' if audio else 'Image'} classifier report</h1><p class=muted>{_e(data['root'])} · "
           f"{_e(metrics['created'])} · edgemaker {_e(metrics['edgemaker_version'])}</p>"]
    out += [f'<p class=warn role=alert>⚠ {_e(w)}</p>' for w in metrics["warnings"]]
    # The headline file: the int8 model with the front end in it, else the smallest quantized, else fp32.
    best = max(exports, key=lambda e: (e["format"] == "onnx-int8", e["quantization"] != "none",
                                       not e["format"].endswith("nofrontend"), -e["size_bytes"])) if exports else None
    cards = [("test accuracy (float)", f"{test['accuracy']:.1%}"), ("classes", len(metrics["classes"])),
             ("train / val / test", " / ".join(str(v) for v in metrics["splits"].values()))]
    if best:
        cards.append((f"{best['format']} accuracy", f"{best['test_accuracy']:.1%}"))
        cards.append((f"{best['format']} size", _mb(best["size_bytes"])))
    out.append("<div class=cards>" + "".join(f"<div class=card>{_e(k)}<b>{_e(v)}</b></div>" for k, v in cards) + "</div>")

    out.append("<h2>Exported files</h2><p class=muted>Each file was re-loaded and run on the test split by its own "
               f"runtime{' (a clip: mean over its windows)' if audio else ''}; latency is one "
               f"{'window' if audio else 'image'} (batch 1) on this machine.</p>")
    out.append(_table(["format", "file", "input", "size (flash)", "test accuracy", "agrees with float",
                       "vs float: right only in float / only here (McNemar p)", "latency (ms)", "peak RAM", "MACs"],
                      [[e["format"], e["path"], e.get("input", ""), _mb(e["size_bytes"]), f"{e['test_accuracy']:.4f}",
                        f"{e['agreement_with_float']:.1%}", _vs_float(e), f"{e['latency_ms']:.2f}",
                        _mb(e["peak_ram_bytes"]) if e.get("peak_ram_bytes") else "–",
                        f"{e['macs'] / 1e6:.1f} M" if e.get("macs") else "–"] for e in exports]))
    out.append("<p class=muted>Peak RAM: tensor-arena estimate from a liveness analysis of the .tflite graph. "
               "MACs: multiply-accumulates of one inference (convolutions and dense layers).</p>")
    out += _tflm(exports)
    choice = metrics["training"].get("int8_head_choice") or {}
    if choice:
        def said(c: dict) -> str:
            aware = c.get("int8_aware_val_accuracy")
            return (f"(validation: float {c['float_val_accuracy']:.4f}, plain post-training {c['plain_val_accuracy']:.4f}"
                    + (f", head fitted on the int8 backbone {aware:.4f}" if aware is not None else "") + f": {c['why']}"
                    + (route_said(c["route"]) if c.get("route") else "") + ")")

        def route_said(r: dict) -> str:
            if r.get("not_tried"):
                return (f"; quantization route '{r['chosen']}': it answers as the float model on every validation "
                        f"sample, so {', '.join(r['not_tried'])} was not tried")
            return f"; quantization route '{r['chosen']}', the closest to float on validation of {len(r['candidates'])}"

        out.append("<p>Int8 head, kept by validation accuracy (ties: plain): " + "; ".join(
            f"{_e(runtime)}-int8 " + (f"kept <b>{_e(c['kept'])}</b>" if c.get("kept") else "<b>refused</b>") +
            f" {_e(said(c))}" for runtime, c in choice.items()) + ".</p>")
    budget = metrics.get("budget") or {}
    if budget.get("max_flash_bytes") or budget.get("max_ram_bytes"):
        limits = ", ".join(f"{k} {_mb(v)}" for k, v in (("flash", budget.get("max_flash_bytes")),
                                                         ("RAM", budget.get("max_ram_bytes"))) if v)
        if budget.get("problems"):
            out += [f'<p class=warn role=alert>Device budget ({_e(limits)}): {_e(p)}</p>' for p in budget["problems"]]
        else:
            out.append(f"<p>Device budget ({_e(limits)}): every device file fits.</p>")

    out.append("<h2>Dataset</h2>")
    bb = metrics["backbone"]
    shape = (f"{bb['window_seconds']} s windows every {bb['hop_seconds']} s at {bb['sample_rate']} Hz; {bb['frontend']}"
             if audio else f"{bb['input_size']} px")
    out.append(f"<p>{_e(metrics['split_how'])}. Backbone <b>{_e(bb['name'])}</b> ({_e(shape)}; licence: "
               f"{_e(bb['licence'])}).</p>")
    net = metrics["training"].get("network")
    if net:  # small_cnn from scratch, or --base-model with its last layers retrained
        how = ((f"trained from scratch on these images (width {net['width']}, "
                f"{'grayscale' if net['grayscale'] else 'RGB'})" if "grayscale" in net else
                f"trained from scratch on these clips' log-mel windows (width {net['width']}, "
                f"{net.get('views', 0)} augmented views, mixup)") if net["trained"] == "from scratch" else
               f"your base model {net['base_model']} with its last {net['retrain_last']} of "
               f"{net['weight_layers']} weight layers reset and retrained, the rest frozen")
        out.append(f"<p>The network was {_e(how)}: best epoch {net['best_epoch']} of {net['epochs_run']}, "
                   f"{net['train_s']:.1f} s.</p>")
    if bb.get("selection") and all("cv_mean" in v for v in bb["selection"].values()):
        out.append(f"<p>Backbone chosen by cross-validation on this dataset (one-standard-error rule, fewer "
                   f"parameters first): <b>{_e(bb['name'])}</b>.</p>")
        out.append(_table(["backbone", "CV accuracy (mean)", "std", "folds"],
                          [[k, f"{v['cv_mean']:.4f}", f"{v['cv_std']:.4f}", v["cv_folds"]] for k, v in bb["selection"].items()]))
    elif bb.get("selection"):
        out.append(f"<p>Backbone chosen by validation accuracy on this dataset: <b>{_e(bb['name'])}</b>.</p>")
        out.append(_table(["backbone", "val accuracy (clips)", "val loss"],
                          [[k, f"{v['val_accuracy']:.4f}", f"{v['val_loss']:.4f}"] for k, v in bb["selection"].items()]))
    auto = metrics.get("auto")
    if auto:
        out.append(f"<p>Chosen automatically (--auto, budget {auto['budget_s']:.0f} s, search {auto['seconds']:.1f} s): "
                   f"<b>{_e(auto['winner'])}</b>, {_e(auto['why'])}.</p>")
        out.append(_table(["candidate", "settings", "fine-tune", "val accuracy", "val loss", "seconds", "predicted s",
                           "predicted int8 size"],
                          [[c["name"], ", ".join(f"{k} {v}" for k, v in c["settings"].items()), c["fine_tune"],
                            f"{c['val_accuracy']:.4f}", f"{c['val_loss']:.4f}", f"{c['seconds']:.1f}",
                            f"{c['predicted_s']:.1f}", f"{c['predicted']['flash_bytes'] / 1e6:.2f} MB"]
                           for c in auto["candidates"]]))
        if auto["skipped"]:
            out.append(_table(["skipped", "why"], [[c["name"], c["reason"]] for c in auto["skipped"]]))
    if metrics.get("budget_search"):
        from .budget_report import report_section

        out += report_section(metrics["budget_search"])
    if metrics.get("distill"):
        d = metrics["distill"]
        out.append(f"<h2>Distillation</h2><p>Student {_e(d['student'])} trained on the probabilities of the teacher "
                   f"{_e(d['teacher'])} (weight {d['alpha']}, {d['views']} augmented views); kept: {_e(d['kept'])} "
                   "(chosen on validation).</p>")
        out.append(_table(["model", "val accuracy", "test accuracy"], [
            [name, f"{d[key + '_val_accuracy']:.4f}", "" if d[key + "_test_accuracy"] is None else
             f"{d[key + '_test_accuracy']:.4f}"]
            for name, key in (("teacher", "teacher"), ("student, from scratch", "twin"), ("student, distilled", "distilled"))]))
    counts = {name: {} for name, _ in splits.items()}
    for name, samples in splits.items():
        for s in samples:
            counts[name][s.label] = counts[name].get(s.label, 0) + 1
    out.append(_table(["class", "train", "val", "test"],
                      [[c, *(counts[n].get(c, 0) for n in ("train", "val", "test"))] for c in metrics["classes"]]))
    if data.get("notes"):
        out.append(_table(["file", "note"], [[n["path"], n["note"]] for n in data["notes"][:200]]))
    if data["skipped"]:
        out.append(f"<details><summary>{len(data['skipped'])} files skipped</summary>")
        out.append(_table(["file", "reason"], [[s["path"], s["reason"]] for s in data["skipped"][:500]]))
        out.append("</details>")

    out.append("<h2>Training</h2>")
    cv = metrics["training"].get("cv_selection")
    how = (f"{_e(cv['refit'])}" if cv else f"best epoch {metrics['training']['best_epoch']} of "
           f"{metrics['training']['epochs_run']} run (early stopping on validation, best epoch restored)")
    out.append(f"<p>Head {how}; {metrics['training']['augmented_views']} "
               f"augmented views per training {'clip' if audio else 'image'}"
               f"{'' if metrics['val'].get('held_out', True) else '; validation is part of its training data, so the cross-validation accuracy is the held-out estimate'}.</p>")
    sel = metrics["training"].get("head_selection")
    if sel:
        out.append(f"<p>{_e(sel['summary'])}.</p>")
        if sel["candidates"]:
            keys = list(sel["chosen"])
            out.append("<details><summary>Head settings tried (validation, ranked by accuracy then loss)</summary>")
            out.append(_table([*keys, "val accuracy", "val loss", "best epoch", "seconds"],
                              [[*(c[k] for k in keys), f"{c['val_accuracy']:.4f}", f"{c['val_loss']:.4f}",
                                c["best_epoch"], f"{c['seconds']:.2f}"] for c in sel["candidates"]]))
            out.append("</details>")
    out += cv_section(metrics["training"].get("cv_selection"))
    out += fine_tune_section(metrics.get("fine_tune"))
    out.append(_line_chart("accuracy", {"train": [h["train_accuracy"] for h in hist],
                                        "val": [h["val_accuracy"] for h in hist]}, 1.0))
    out.append(_line_chart("loss", {"train": [h["train_loss"] for h in hist], "val": [h["val_loss"] for h in hist]}))

    out.append(f"<h2>Test results</h2><p>Accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f} on "
               f"{test['samples']} {noun} (float model{'; a clip is the mean of its windows' if audio else ''}).</p>")
    out.append(_confusion(test_eval))
    out.append(_table(["class", "precision", "recall", "F1", "support"],
                      [[c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
                       for c, m in test["per_class"].items()]))
    wrong = [i for i in range(len(splits.test)) if test_eval.y_pred[i] != test_eval.y_true[i]]
    out.append(f"<h2>Misclassified test {noun} ({len(wrong)})</h2>")
    if wrong:
        figs = []
        for i in wrong[:max_thumbs]:
            s = splits.test[i]
            pred = test_eval.classes[test_eval.y_pred[i]]
            conf = test_eval.probabilities[i].max()
            media = _audio_figure(s.path) if audio else f'<img alt="{_e(s.path.name)}" src="{_thumb(s.path)}">'
            figs.append(f'<figure{" class=clip" if audio else ""}>{media}<figcaption>true <b>{_e(s.label)}</b>'
                        f"<br>predicted <b>{_e(pred)}</b> ({conf:.0%})<br><span class=muted>{_e(s.path.name)}</span>"
                        "</figcaption></figure>")
        out.append("<div class=thumbs>" + "".join(figs) + "</div>")
    else:
        out.append(f"<p>None: every test {noun[:-1]} was classified correctly.</p>")
    out += _explanations_section(metrics.get("explanations"), explanations or {}, splits)
    out += _label_issues_section(metrics.get("label_issues"), data["root"], audio, max_thumbs)
    out.append("</main></body></html>")
    write_text(target, "\n".join(out))


def _tflm(exports: list[dict]) -> list[str]:
    """The int8 .tflite files run in TensorFlow Lite Micro (export/tflm.py): agreement and arena."""
    rows = [(e, e["tflm"]) for e in exports if e.get("tflm") and e["format"] not in ("c-array", "arduino")]
    if not rows:
        return []
    said = []
    for e, t in rows:
        if t["status"] != "ok":
            said.append(f"{_e(e['path'])}: {_e(t['status'])} ({_e(t['message'])})")
            continue
        said.append(f"{_e(e['path'])}: agrees with LiteRT on <b>{t['agreement_with_litert']:.1%}</b> of {t['samples']} "
                    f"test files (of {t['of']}; one inference each, top class equal; largest probability difference "
                    f"{t['max_abs_diff']:.4f}); "
                    f"tensor arena <b>{_mb(t['arena_bytes'])}</b> measured: {_mb(t.get('arena_planned_bytes') or 0)} "
                    f"of activations (liveness estimate {_mb(t['estimate_bytes']) if t.get('estimate_bytes') else '–'}) "
                    f"+ {_mb(t.get('arena_persistent_bytes') or 0)} persistent; {t['ms_per_inference']:.0f} ms "
                    "per inference with TFLM's reference kernels on this machine"
                    + (f"; where it differs, LiteRT's own reference kernels answer as TFLM on "
                       f"{t['reference_kernels_side_with_tflm']} of {t['differing']}"
                       if t.get("reference_kernels_side_with_tflm") is not None else ""))
    return ["<h3>TensorFlow Lite Micro</h3><p>Each full-int8 .tflite was run in the TensorFlow Lite Micro interpreter, "
            "the runtime of microcontrollers; device budgets use its measured arena.</p><ul>"
            + "".join(f"<li>{s}</li>" for s in said) + "</ul>"]

