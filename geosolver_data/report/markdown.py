"""Markdown tables, as the dataset card and the Dagster UI's metadata show them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A pipe table; None shows as a dash and a `|` inside a cell is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("—" if v is None else str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)
