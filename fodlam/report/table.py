"""Plain-text and HTML tables, with no dependencies."""

from __future__ import annotations

import html


def _is_numberish(text: str) -> bool:
    head = text.split(" ")[0].rstrip("%")
    try:
        float(head)
        return True
    except ValueError:
        return False


def render_table(headers: list[str], rows: list[list]) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [i > 0 and bool(cells) and all(_is_numberish(r[i]) for r in cells)
               for i in range(len(headers))]

    def fmt(row):
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells]


def html_table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
