"""Invariants of a published dataset version, as lists of problems (empty = fine).

The Dagster asset checks and the tests call these; each names what is wrong, not just that
something is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from geosolver_data.balance import split_blocks
from geosolver_data.db import connect
from geosolver_data.geo import invalid_coordinate_reason
from geosolver_data.hamming import near_pairs
from geosolver_data.spec import DatasetSpec
from geosolver_data.store.atomic import file_sha256
from geosolver_data.store.manifests import read_dataset_manifest


def _shard_glob(version_dir: Path) -> str:
    return str(version_dir / "shards" / "*.parquet")


def manifest_problems(version_dir: Path) -> list[str]:
    """Every listed shard exists with its size, sha256 and row count; no unlisted shard exists."""
    manifest = read_dataset_manifest(version_dir)
    problems = []
    listed = set()
    for shard in manifest.shards:
        path = version_dir / shard.path
        listed.add(path.name)
        if not path.exists():
            problems.append(f"{shard.path}: listed but missing")
            continue
        if path.stat().st_size != shard.bytes:
            problems.append(f"{shard.path}: {path.stat().st_size} bytes, manifest says {shard.bytes}")
        if file_sha256(path) != shard.sha256:
            problems.append(f"{shard.path}: sha256 differs from the manifest")
        elif pq.ParquetFile(path).metadata.num_rows != shard.rows:
            problems.append(f"{shard.path}: row count differs from the manifest")
    extra = sorted(p.name for p in (version_dir / "shards").glob("*.parquet") if p.name not in listed)
    problems += [f"shards/{name}: present but not in the manifest" for name in extra]
    return problems


def duplicate_sha256(version_dir: Path) -> list[str]:
    rows = connect().sql("SELECT sha256, count(*) FROM read_parquet(?) GROUP BY 1 HAVING count(*) > 1 ORDER BY 1",
                         params=[_shard_glob(version_dir)]).fetchall()
    return [f"sha256 {h[:12]}… appears {n} times" for h, n in rows]


def near_duplicates(version_dir: Path, threshold: int) -> list[str]:
    con = connect()
    con.execute("CREATE TABLE h AS SELECT row_number() OVER () AS id, phash AS h, image_id FROM read_parquet(?)",
                [_shard_glob(version_dir)])
    pairs = near_pairs(con, "h", threshold)
    return [f"rows {a} and {b} are {d} bits apart (threshold {threshold})" for a, b, d in pairs.tolist()]


def invalid_coordinates(version_dir: Path) -> list[str]:
    rows = connect().sql("SELECT image_id, lat, lon FROM read_parquet(?)", params=[_shard_glob(version_dir)]).fetchall()
    return [f"{i}: {why}" for i, lat, lon in rows if (why := invalid_coordinate_reason(lat, lon))]


def _columns(version_dir: Path, columns: list[str]) -> dict[str, np.ndarray]:
    table = pq.read_table(version_dir / "shards", columns=columns)
    return {c: np.asarray(table.column(c).to_pylist() if c == "split" else table.column(c).to_numpy())
            for c in columns}


def split_overlap(version_dir: Path, spec: DatasetSpec) -> list[str]:
    """Blocks (H3 at the split resolution) whose images fall in more than one split."""
    col = f"h3_r{spec.balance.resolution}"
    fine = spec.balance.split_resolution > spec.balance.resolution  # blocks come from the coordinates
    data = _columns(version_dir, [col, "split", *(["lat", "lon"] if fine else [])])
    blocks = split_blocks(data[col], data.get("lat"), data.get("lon"), spec.balance)
    names, codes = np.unique(data["split"].astype(str), return_inverse=True)
    pairs = np.unique(np.stack([blocks, codes.astype(np.uint64)], axis=1), axis=0)  # distinct (block, split)
    shared, counts = np.unique(pairs[:, 0], return_counts=True)
    return [f"block {int(b):x} is in splits {sorted(names[pairs[pairs[:, 0] == b, 1].astype(int)].tolist())}"
            for b in shared[counts > 1]]


def quota_problems(version_dir: Path, spec: DatasetSpec) -> list[str]:
    """No cell above the cap; no more rows than the target."""
    col = f"h3_r{spec.balance.resolution}"
    cells = _columns(version_dir, [col])[col]
    uniq, counts = np.unique(cells, return_counts=True)
    problems = [f"cell {int(c):x} has {n} images > cap {spec.balance.cap}"
                for c, n in zip(uniq, counts, strict=True) if n > spec.balance.cap]
    if len(cells) > spec.balance.target_size:
        problems.append(f"{len(cells)} rows > target_size {spec.balance.target_size}")
    return problems


# name -> (what it guarantees, how to find violations); the asset checks and `geosolver validate` both use it
CHECKS: dict[str, tuple[str, Callable[[Path, DatasetSpec], list[str]]]] = {
    "manifest_matches_files": ("Every shard's size, sha256 and row count match manifest.json.",
                               lambda d, spec: manifest_problems(d)),
    "no_duplicate_sha256": ("No two rows share an image sha256.", lambda d, spec: duplicate_sha256(d)),
    "no_near_duplicates": ("No two rows are within the perceptual-hash threshold.",
                           lambda d, spec: near_duplicates(d, spec.dedup.phash_threshold)),
    "coordinates_valid": ("Every row has finite, in-range, non-(0,0) coordinates.",
                          lambda d, spec: invalid_coordinates(d)),
    "quotas_respected": ("No cell holds more than the cap; no more rows than the target.", quota_problems),
    "splits_disjoint": ("No H3 block at the split resolution contributes to two splits.", split_overlap),
}
