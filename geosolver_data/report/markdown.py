"""Markdown tables, as the dataset card and the Dagster UI's metadata show them.

Cells hold strings that came from outside (a creator, a licence, an image id), so each is made plain text
of one line: control characters (a newline would end the row, a NUL byte has no place in a text file)
become spaces, `<`, `>` and `&` become entities (no raw HTML reaches a renderer), and the characters that
make Markdown syntax inside a line are backslash-escaped (no link, image, emphasis, code span or extra
cell can be smuggled in; a heading or list needs a line start, which a cell never has).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MARKDOWN = re.compile(r"([\\`*_\[\]~|])")  # code, emphasis, links and images, strikethrough, cells


def cell(value: object) -> str:
    """One value as the literal text of a table cell; None shows as a dash."""
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return str(value)
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    return _MARKDOWN.sub(r"\\\1", html.escape(text, quote=False))


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A pipe table whose cells are text, whatever they hold (see `cell`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
