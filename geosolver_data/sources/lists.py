"""Reading candidate lists (CSV or Parquet) with DuckDB, filtered to one region in SQL.

Each region's run reads only the rows whose point lies in its box; the region that owns strays
also reads the rows that lie in no region's box (bad or missing coordinates included), so every
row is decided by exactly one partition.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from geosolver_data.db import connect
from geosolver_data.sources.base import SourceError
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


def _reader(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "read_parquet(?)"
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return "read_csv(?, all_varchar = true, header = true)"
    raise SourceError(f"{path}: expected a .csv, .csv.gz, .tsv or .parquet file")


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
                regions: tuple[Region, ...], owns_strays: bool) -> Iterator[dict]:
    """The rows of the list whose point is in `region` (plus strays for their owner), as dicts with
    the list's own column names; coordinates are compared as doubles, bad ones count as strays."""
    if not path.is_file():
        raise SourceError(f"list {path} does not exist")
    con = connect()
    source = _reader(path)
    columns = [d[0] for d in con.execute(f"SELECT * FROM {source} LIMIT 0", [str(path)]).description]
    lat_col, lon_col = pick(columns, lat_names, path), pick(columns, lon_names, path)
    lat, lon = f'TRY_CAST("{lat_col}" AS DOUBLE)', f'TRY_CAST("{lon_col}" AS DOUBLE)'
    mine = _inside(lat, lon, region)
    if owns_strays:
        anywhere = " OR ".join(_inside(lat, lon, r) for r in regions)
        mine = f"{mine} OR NOT coalesce({anywhere}, false)"
    reader = con.sql(f"SELECT * FROM {source} WHERE {mine}", params=[str(path)]).to_arrow_reader(4096)
    for batch in reader:
        yield from batch.to_pylist()
