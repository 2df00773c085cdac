"""One table, three renderings: aligned text for the terminal, Markdown, and HTML for the page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Table:
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    right: Sequence[bool] | None = None  # per column: right-align (numbers); default all but the first

    def _align(self) -> list[bool]:
        return list(self.right) if self.right is not None else [i > 0 for i in range(len(self.headers))]

    def text(self) -> str:
        cells = [list(map(str, self.headers))] + [list(map(str, r)) for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]
        right = self._align()

        def line(row: list[str]) -> str:
            return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()

        return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])

    def markdown(self) -> str:
        def esc(c: object) -> str:
            return str(c).replace("|", "\\|")

        right = self._align()
        out = ["| " + " | ".join(esc(h) for h in self.headers) + " |",
               "| " + " | ".join("---:" if r else "---" for r in right) + " |"]
        out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self.rows]
        return "\n".join(out)

    def html(self) -> str:
        right = self._align()

        def cell(tag: str, c: object, r: bool) -> str:
            return f'<{tag}{" class=num" if r else ""}>{html.escape(str(c))}</{tag}>'

        head = "".join(cell("th", h, r) for h, r in zip(self.headers, right))
        body = "".join("<tr>" + "".join(cell("td", c, r) for c, r in zip(row, right)) + "</tr>" for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
