"""Reading candidate lists (CSV or Parquet) with DuckDB, filtered to one region in SQL.

Each region's run reads only the rows whose point lies in its box; the region that owns strays
also reads the rows that lie in no region's box (bad or missing coordinates included), so every
row is decided by exactly one partition.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geosolver_data.db import connect
from geosolver_data.ingest.candidates import Candidate
from geosolver_data.ingest.sources.base import SourceError
from geosolver_data.spec import Region


def parse_time(value: object) -> datetime | None:
    """Epoch seconds or milliseconds (numbers or digit strings) or ISO 8601; naive means UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = None
    try:
        if number is not None:
            if not math.isfinite(number):
                return None
            return datetime.fromtimestamp(number / 1000 if abs(number) > 1e11 else number, UTC)
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


MALFORMED = "_malformed"  # set on a row DuckDB could not parse: its line number and the error
DONE = "_done"  # {DONE: [key, ...]}: rows whose key an earlier run finished (see region_rows' `done`)
ROW = "_row"  # the row's position in the list (1 = the first data row)
LOOKUP = "_lookup"  # the row number of the `lookup` table that matched (see region_rows)


def _first(column: str) -> str:
    return f"_first_{column}"


MAX_HEADER_BYTES = 1 << 20


def _csv_header(path: Path, delimiter: str) -> list[str]:
    """The header line's column names. Only that line is decoded: a text reader decodes a block ahead,
    so a bad byte in row 2 failed the whole list, where it belongs to its row (a `malformed_row`)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            line = f.readline(MAX_HEADER_BYTES)
        text = line.decode("utf-8-sig")
        return next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: cannot read its header line: {exc}") from exc


def _reader(path: Path) -> tuple[str, bool]:
    """The DuckDB table function for the list, and whether it is a CSV (whose bad rows are kept).

    CSVs are read with the columns of their header line and the dialect of their suffix, not with
    DuckDB's sniffer: one malformed row can make the sniffer misread the whole file (as one column,
    say), while a declared dialect lets every other row through and records the bad one."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "read_parquet(?)", False
    if not name.endswith((".csv", ".csv.gz", ".tsv")):
        raise SourceError(f"{path}: expected a .csv, .csv.gz, .tsv or .parquet file")
    delimiter = "\t" if name.endswith(".tsv") else ","
    header = _csv_header(path, delimiter)
    if not header:
        raise SourceError(f"{path}: the file is empty; expected a header line naming its columns")
    columns = "{" + ", ".join(f"{_literal(c)}: 'VARCHAR'" for c in header) + "}"
    delim = "\\t" if delimiter == "\t" else ","
    return (f"read_csv(?, header = true, auto_detect = false, delim = '{delim}', quote = '\"', escape = '\"', "
            f"columns = {columns}, ignore_errors = true, store_rejects = true)"), True


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _inside(lat: str, lon: str, region: Region) -> str:
    min_lon, min_lat, max_lon, max_lat = region.bbox
    return f"({lat} BETWEEN {min_lat!r} AND {max_lat!r} AND {lon} BETWEEN {min_lon!r} AND {max_lon!r})"


def pick(columns: Sequence[str], names: Sequence[str], path: Path) -> str:
    lower = {c.lower(): c for c in columns}
    found = next((lower[n] for n in names if n in lower), None)
    if found is None:
        raise SourceError(f"{path}: needs a column named one of {list(names)}; it has {list(columns)}")
    return found


def region_rows(path: Path, lat_names: Sequence[str], lon_names: Sequence[str], region: Region,
                regions: tuple[Region, ...], owns_strays: bool, unique: Sequence[Sequence[str]] = (),
                keep: Sequence[str] = (), done: pa.Array | None = None,
                lookup: pa.Table | None = None) -> Iterator[dict]:
    """The rows of the list whose point is in `region` (plus strays for their owner), as dicts with
    the list's own column names; coordinates are compared as doubles, bad ones count as strays.

    Each row carries `_row`, its position in the list, and for each column of `unique` the list has
    (one name among alternatives), `_first_<column>`: the position of the first row with the same
    value, wherever that row lies, so every region agrees on which row of a repeated URL or id is the
    original. The owner of strays also gets one `{"_malformed": (line, error)}` per row that could
    not be parsed, so no row of the list is lost without a trace.

    With `keep` (column names, any case), only those columns of the list (and the coordinates and
    `unique` columns) are read: a wide list (OSV-5M has 25 columns) then costs DuckDB and Python a
    fraction of the memory.

    With `done` (keys of the first `unique` column that earlier runs finished), the rows whose key is
    in it, and that are the first row with that key, come as `{DONE: [key, ...]}` per batch instead of
    one dict each: a refresh of a million-row list stays in DuckDB and Arrow.

    With `lookup` (a table whose column `key` holds keys of the first `unique` column, each once),
    every row carries the lookup's other columns for its key (nulls when it has none): DuckDB joins
    only the key to a row number of the lookup (a dict of millions of keys would cost Python
    gigabytes, and the lookup's own columns would widen every row DuckDB sorts), and each batch of
    rows that need them takes those rows of the lookup."""
    if not path.is_file():
        raise SourceError(f"list {path} does not exist")
    con = connect()
    source, is_csv = _reader(path)
    columns = [d[0] for d in con.execute(f"SELECT * FROM {source} LIMIT 0", [str(path)]).description]
    lat_col, lon_col = pick(columns, lat_names, path), pick(columns, lon_names, path)
    lat, lon = f'TRY_CAST("{lat_col}" AS DOUBLE)', f'TRY_CAST("{lon_col}" AS DOUBLE)'
    mine = _inside(lat, lon, region)
    if owns_strays:
        anywhere = " OR ".join(_inside(lat, lon, r) for r in regions)
        mine = f"{mine} OR NOT coalesce({anywhere}, false)"
    keys = [c for names in unique if (c := next((x for x in columns if x.lower() in names), None))]
    wanted = {n.lower() for n in keep}
    selected = ", ".join(f'"{c}"' for c in columns if c.lower() in wanted or c in (lat_col, lon_col, *keys)) \
        if keep else "*"
    firsts = "".join(f', CASE WHEN coalesce("{c}", \'\') = \'\' THEN NULL ELSE min({ROW}) OVER (PARTITION BY "{c}") '
                     f'END AS "{_first(c)}"' for c in keys)
    # row_number() OVER () numbers the rows in file order (DuckDB keeps the scan's order).
    key = f'trim(CAST("{keys[0]}" AS VARCHAR))' if keys else ""  # the first unique column, as done/lookup hold it
    flag = ""
    if done is not None and keys:
        con.register("done_keys", pa.table({"k": done.cast(pa.string())}))
        flag = (f', coalesce({key} IN (SELECT k FROM done_keys) AND "{_first(keys[0])}" = {ROW}, false) AS {DONE}, '
                f'{key} AS {DONE}_key')
    joined, extra, found = "marked", "", None
    if lookup is not None and keys:
        con.register("lookup_keys", pa.table({"key": lookup.column("key"),
                                              LOOKUP: pa.array(np.arange(len(lookup), dtype=np.int64))}))
        joined = f'marked LEFT JOIN lookup_keys ON lookup_keys."key" = {key}'
        extra = f", lookup_keys.{LOOKUP}"
        found = lookup.drop_columns(["key"])
    query = (f"WITH listed AS (SELECT {selected}, row_number() OVER () AS {ROW} FROM {source}), "
             f"marked AS (SELECT *{firsts} FROM listed) SELECT marked.*{flag}{extra} FROM {joined} "
             f"WHERE {mine} ORDER BY {ROW}")
    reader = con.sql(query, params=[str(path)]).to_arrow_reader(4096)
    for batch in reader:
        yield from _rows_of(batch, bool(flag), found)
    if is_csv and owns_strays:
        errors = con.execute(
            "SELECT line, first(error_type ORDER BY column_idx), first(error_message ORDER BY column_idx) "
            "FROM reject_errors WHERE scan_id = (SELECT max(scan_id) FROM reject_scans) "
            "GROUP BY line ORDER BY line").fetchall()
        for line, kind, message in errors:
            yield {MALFORMED: (int(line), f"{kind}: {message}")}


def _rows_of(batch: pa.RecordBatch, marked_done: bool, lookup: pa.Table | None) -> Iterator[dict]:
    """One batch of region_rows' query: the finished keys at once, the other rows as dicts, each
    with its row of `lookup` (nulls where its key has none)."""
    if marked_done:
        mask = batch.column(DONE)
        if pc.any(mask).as_py():
            yield {DONE: batch.column(f"{DONE}_key").filter(mask).to_pylist()}
        batch = batch.filter(pc.invert(mask)).drop_columns([DONE, f"{DONE}_key"])
    if lookup is None:
        yield from batch.to_pylist()
        return
    found = lookup.take(batch.column(LOOKUP))
    rows = pa.Table.from_batches([batch.drop_columns([LOOKUP])])
    for name, column in zip(found.column_names, found.columns, strict=True):
        rows = rows.append_column(name, column)
    yield from rows.to_pylist()


def first_of(row: dict, column: str | None) -> int | None:
    """The position of the row this one repeats in `column`, or None when it is the first."""
    if column is None:
        return None
    first = row.get(_first(column))
    return first if first is not None and first != row[ROW] else None


def malformed(label: str, row: dict) -> Candidate:
    """A row the reader could not parse, rejected as `malformed_row` under its line number, so it is
    accounted for like every other row."""
    line, error = row[MALFORMED]
    return Candidate(f"{label}:malformed-line-{line}", rejected="malformed_row", detail=f"line {line}: {error}")
