"""Attach H3 cells at every configured resolution and an ISO country code to each image."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import h3_cells
from geosolver_data.store.atomic import atomic_path


def h3_column(resolution: int) -> str:
    return f"h3_r{resolution}"


def assign_geocells(kept_path: Path, out_path: Path, resolutions: tuple[int, ...]) -> pa.Table:
    """Read deduplicated metadata, add `h3_r<N>` (uint64) and `country`, write and return the table.

    Coordinates were validated at ingest, so every row gets cells.
    """
    table = pq.read_table(kept_path)
    lat = table.column("lat").to_numpy()
    lon = table.column("lon").to_numpy()
    for res, cells in h3_cells(lat, lon, resolutions).items():
        table = table.append_column(pa.field(h3_column(res), pa.uint64()), pa.array(cells, pa.uint64()))
    countries = load_gazetteer().countries(lat, lon) if len(lat) else []
    table = table.append_column("country", pa.array(list(countries), pa.string()))
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table
