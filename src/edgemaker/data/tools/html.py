"""One offline HTML page for `data inspect --out`: thumbnails of problem images and players for
problem clips, embedded as data: URIs so the page works without the data folder or a network."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

MAX_MEDIA = 300  # embedded thumbnails/players; the rest are listed by name
MAX_CLIP_BYTES = 2_000_000
_MIME = {".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
         ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".aif": "audio/aiff", ".aiff": "audio/aiff"}


def _thumb(path: Path) -> str | None:
    from ..images import decode_image

    try:
        im = decode_image(path.read_bytes(), min_side=128)
        im.thumbnail((128, 128))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
    except Exception:  # a corrupt file has no picture: the page says so instead
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class _Media:
    def __init__(self, root: Path, modality: str) -> None:
        self.root, self.modality, self.used = root, modality, 0

    def __call__(self, relpath: str, caption: str = "") -> str:
        path = self.root / relpath
        label = html.escape(caption or relpath)
        body = ""
        if self.used < MAX_MEDIA and path.is_file():
            if self.modality == "image":
                uri = _thumb(path)
                body = f'<img src="{uri}" alt="">' if uri else '<div class="bad">cannot be shown</div>'
            elif path.stat().st_size <= MAX_CLIP_BYTES and path.stat().st_size > 0:
                mime = _MIME.get(path.suffix.lower(), "audio/wav")
                data = base64.b64encode(path.read_bytes()).decode()
                body = f'<audio controls preload="none" src="data:{mime};base64,{data}"></audio>'
            self.used += 1
        return f'<figure>{body}<figcaption>{label}</figcaption></figure>'


def render(result: dict, text: str) -> str:
    """The page: the text summary, then one section per kind of problem with the files shown."""
    from ..sources import data_root

    media = _Media(data_root(result["root"]), result["modality"])  # a folder or an fsspec URL
    p = result["problems"]
    parts = [f"<h1>Data inspection: {html.escape(result['root'])}</h1>",
             f"<pre>{html.escape(text)}</pre>"]

    def section(title: str, rows: list[str]) -> None:
        parts.append(f"<h2>{html.escape(title)} ({len(rows)})</h2>")
        parts.extend(rows or ["<p>none</p>"])

    section("Unusable files", [f'<div class="row">{media(x["path"], x["path"] + ": " + x["reason"])}</div>'
                               for x in p["unusable"]])
    section("Same content under two labels", [
        '<div class="row">' + "".join(media(path, path) for path in x["paths"]) + "</div>"
        for x in p["cross_label_duplicates"]])
    section("Near-duplicates", [
        '<div class="row">' + "".join(media(f["path"], f["path"]) for f in g["files"])
        + (' <span class="bad">different labels</span>' if g["cross_label"] else "")
        + (' <span class="bad">across splits</span>' if g["cross_split"] else "") + "</div>"
        for g in p["near_duplicates"]])
    section("Exact duplicates (kept once)", [
        '<div class="row">' + media(x["kept"], "kept: " + x["kept"])
        + "".join(media(c, "copy: " + c) for c in x["copies"]) + "</div>" for x in p["exact_duplicates"]])
    if result["modality"] == "audio":
        section("Silent clips", [f'<div class="row">{media(x["path"])}</div>' for x in p["silent"]])
    issues = result.get("label_issues")
    if issues and not issues.get("skipped"):
        section("Likely label errors (most suspicious first)", [
            f'<div class="row">{media(x["path"], x["path"])}<span>labelled <b>{html.escape(x["label"])}</b> '
            f'({x["label_probability"]:.2f}), looks like <b>{html.escape(x["suggested"])}</b> '
            f'({x["suggested_probability"]:.2f})</span></div>' for x in issues["issues"]])
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}pre{background:#f5f5f5;padding:1em;"
             "overflow-x:auto}.row{display:flex;flex-wrap:wrap;gap:8px;align-items:center;border-bottom:1px solid #ddd;"
             "padding:6px 0}figure{margin:0;max-width:260px}figcaption{font-size:12px;word-break:break-all}"
             "img{max-width:128px;max-height:128px}.bad{color:#b00020}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>edgemaker data inspect</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
