"""DuckDB connections configured the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import duckdb


def connect(path: Path | str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory (or file) database without the terminal progress bar, which would only
    clutter Dagster's captured logs."""
    con = duckdb.connect(str(path) if path else ":memory:", read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    return con
