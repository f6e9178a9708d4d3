"""Publish a dataset version: shards, reports, coverage map and manifest, then an atomic rename."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.card import dataset_card
from geosolver_data.catalog import rebuild_catalog
from geosolver_data.coverage import coverage_map
from geosolver_data.layout import DatasetLayout, publish_dir, staging_dir, write_json, write_text
from geosolver_data.records import REJECT_SCHEMA
from geosolver_data.shards import shard_columns, write_shards
from geosolver_data.spec import DatasetSpec

VERSION_CHARS = 16


@dataclass(frozen=True)
class Published:
    version: str
    path: Path
    manifest: dict
    new: bool  # False when this exact content was already published


def _merge_rejects(files: Sequence[Path], out: Path) -> dict[str, int]:
    tables = [pq.read_table(f) for f in files]
    table = pa.concat_tables(tables) if tables else REJECT_SCHEMA.empty_table()
    table = table.sort_by("image_id")
    pq.write_table(table, out, compression="zstd")
    reasons, counts = np.unique(np.asarray(table.column("reason").to_pylist(), dtype=str), return_counts=True)
    return {str(r): int(c) for r, c in zip(reasons, counts, strict=True)}


def publish_dataset(layout: DatasetLayout, spec: DatasetSpec, balanced: pa.Table, balance_report: dict,
                    raw_files: Sequence[Path], reject_files: Sequence[Path]) -> Published:
    """Write everything into a staging folder, name it by its content hash, and publish it."""
    staging = staging_dir(layout.versions)
    try:
        shard_set = write_shards(balanced, raw_files, spec, staging)
        version = shard_set.content_hash[:VERSION_CHARS]
        (staging / "reports").mkdir()
        rejects = _merge_rejects(reject_files, staging / "reports" / "rejects.parquet")
        shutil.copyfile(layout.dedup_dropped, staging / "reports" / "dedup_dropped.parquet")
        dropped = pq.read_table(layout.dedup_dropped, columns=["reason"]).column("reason").to_pylist()
        splits = np.asarray(balanced.column("split").to_pylist(), dtype=str)
        coverage_map(balanced.column("lat").to_numpy(), balanced.column("lon").to_numpy(), splits,
                     f"{spec.name} {version}: {balanced.num_rows} images", staging / "coverage.png")
        manifest = {
            "dataset": spec.name,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rows": balanced.num_rows,
            "columns": shard_columns(spec.h3_resolutions),
            "h3_resolutions": list(spec.h3_resolutions),
            "splits": {s: int((splits == s).sum()) for s in ("train", "val", "test")},
            "shards": [asdict(s) for s in shard_set.shards],
            "content_sha256": shard_set.content_hash,
            "balance": balance_report,
            "dedup_dropped": {r: dropped.count(r) for r in sorted(set(dropped))},
            "rejects": rejects,
            "spec": spec.to_dict(),
            "spec_fingerprint": spec.fingerprint(),
        }
        write_json(staging / "manifest.json", manifest)
        write_text(staging / "card.md", dataset_card(manifest, balanced))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    final = layout.version_dir(version)
    new = publish_dir(staging, final)
    write_text(layout.latest_pointer, version + "\n")
    rebuild_catalog(layout.home)
    return Published(version=version, path=final, manifest=json.loads((final / "manifest.json").read_text()),
                     new=new)
