"""Remove exact, perceptual and same-place duplicates, keeping one image of each group.

Which image is kept is deterministic: the one with the most pixels, then the smallest image_id.
Every dropped image is reported with its reason and the kept image it duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.db import connect
from geosolver_data.hamming import near_pairs
from geosolver_data.schemas import DROPPED_SCHEMA, META_COLUMNS
from geosolver_data.spec import DedupSpec
from geosolver_data.store.atomic import atomic_path

_METRES_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class DedupStats:
    candidates: int
    kept: int
    dropped: dict[str, int]


def greedy_keep(n: int, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk images in priority order (rank 0 first); keep one unless a kept neighbour covers it.

    `pairs` is (P, 3) of (a, b, distance) with a < b, sorted by b. Returns (kept mask, the kept
    image each dropped one duplicates or -1, that distance). Every dropped image is within the
    threshold of the image it names, and no two kept images are.
    """
    kept = np.ones(n, dtype=bool)
    dup_of = np.full(n, -1, dtype=np.int64)
    dist = np.zeros(n, dtype=np.float64)
    for a, b, d in zip(pairs[:, 0].astype(np.int64).tolist(), pairs[:, 1].astype(np.int64).tolist(),
                       pairs[:, 2].tolist(), strict=True):
        if kept[b] and kept[a]:  # a < b, so a was decided first; b is only kept if no kept a covers it
            kept[b] = False
            dup_of[b], dist[b] = a, d
    return kept, dup_of, dist


def _load(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> None:
    cols = ", ".join(META_COLUMNS)
    paths = [str(p) for p in files]
    con.execute(f"""
        CREATE OR REPLACE TABLE img AS
        SELECT row_number() OVER (ORDER BY width * height DESC, image_id) - 1 AS rank, {cols}
        FROM read_parquet(?, union_by_name = true)
    """, [paths])
    clash = con.execute("SELECT image_id, count(*) FROM img GROUP BY 1 HAVING count(*) > 1 LIMIT 3").fetchall()
    if clash:
        raise ValueError(f"image_id must be unique across sources and regions; repeated: {clash}")


def _drop(con: duckdb.DuckDBPyConnection, rank: np.ndarray, dup_rank: np.ndarray, dist: np.ndarray,
          reason: str) -> None:
    if len(rank) == 0:
        return
    batch = pa.table({"rank": rank, "dup_rank": dup_rank, "distance": dist})  # noqa: F841 (DuckDB scans it)
    con.execute(f"""
        INSERT INTO dropped SELECT d.rank, '{reason}', d.dup_rank, d.distance FROM batch d
    """)
    con.execute("DELETE FROM alive WHERE rank IN (SELECT rank FROM batch)")


def _exact(con: duckdb.DuckDBPyConnection, column: str, reason: str) -> None:
    """Within groups of equal `column`, keep the best-ranked image."""
    rows = con.execute(f"""
        SELECT rank, min(rank) OVER (PARTITION BY {column}) AS best FROM alive
        QUALIFY rank <> best ORDER BY rank
    """).fetchnumpy()
    _drop(con, rows["rank"], rows["best"], np.zeros(len(rows["rank"])), reason)


def _greedy_stage(con: duckdb.DuckDBPyConnection, pairs: np.ndarray, reason: str) -> None:
    """Resolve neighbour pairs (over alive ranks) with `greedy_keep` and drop the losers."""
    if len(pairs) == 0:
        return
    ids = np.unique(pairs[:, :2].astype(np.int64))
    local = np.searchsorted(ids, pairs[:, :2])
    order = np.lexsort((local[:, 0], local[:, 1]))
    kept, dup_of, dist = greedy_keep(len(ids), np.column_stack([local, pairs[:, 2]])[order])
    lost = ~kept
    _drop(con, ids[lost], ids[dup_of[lost]], dist[lost], reason)


def _perceptual(con: duckdb.DuckDBPyConnection, threshold: int) -> None:
    _exact(con, "phash", "perceptual")  # identical hashes first: a flood of blank images stays linear
    con.execute("CREATE OR REPLACE TEMP TABLE hashes AS SELECT rank AS id, phash AS h FROM alive")
    _greedy_stage(con, near_pairs(con, "hashes", threshold), "perceptual")


def _same_place(con: duckdb.DuckDBPyConnection, metres: float) -> None:
    dlat = metres / _METRES_PER_DEG_LAT
    rows = con.execute(f"""
        SELECT a.rank AS a, b.rank AS b,
               2 * 6371008.8 * asin(sqrt(
                   pow(sin(radians(b.lat - a.lat) / 2), 2)
                   + cos(radians(a.lat)) * cos(radians(b.lat)) * pow(sin(radians(b.lon - a.lon) / 2), 2)
               )) AS d
        FROM alive a JOIN alive b
          ON a.sequence_id = b.sequence_id AND a.rank < b.rank AND abs(a.lat - b.lat) <= {dlat}
        WHERE d <= {float(metres)}
        ORDER BY b, a
    """).fetchnumpy()
    pairs = np.column_stack([rows["a"], rows["b"], rows["d"]]) if len(rows["a"]) else np.zeros((0, 3))
    _greedy_stage(con, pairs.astype(np.float64), "same_place")


def deduplicate(files: Sequence[Path], spec: DedupSpec, kept_path: Path, dropped_path: Path) -> DedupStats:
    """Read raw metadata (never the bytes), write the kept rows and the dropped report."""
    con = connect()
    _load(con, files)
    con.execute("CREATE TEMP TABLE alive AS SELECT rank, sha256, phash, sequence_id, lat, lon FROM img")
    con.execute("CREATE TEMP TABLE dropped (rank BIGINT, reason VARCHAR, dup_rank BIGINT, distance DOUBLE)")
    _exact(con, "sha256", "exact")
    _perceptual(con, spec.phash_threshold)
    _same_place(con, spec.same_place_m)
    with atomic_path(kept_path) as tmp:
        kept = con.sql(f"SELECT {', '.join(META_COLUMNS)} FROM img WHERE rank IN (SELECT rank FROM alive) "
                           "ORDER BY image_id").to_arrow_table()
        pq.write_table(kept, tmp, compression="zstd")
    with atomic_path(dropped_path) as tmp:
        dropped = con.sql("""
            SELECT i.image_id, d.reason, k.image_id AS duplicate_of, d.distance
            FROM dropped d JOIN img i ON i.rank = d.rank JOIN img k ON k.rank = d.dup_rank
            ORDER BY i.image_id
        """).to_arrow_table().cast(DROPPED_SCHEMA)
        pq.write_table(dropped, tmp, compression="zstd")
    counts = dict(con.execute("SELECT reason, count(*) FROM dropped GROUP BY 1 ORDER BY 1").fetchall())
    total = con.execute("SELECT count(*) FROM img").fetchone()[0]
    return DedupStats(candidates=total, kept=kept.num_rows, dropped=counts)
