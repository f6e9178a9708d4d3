"""Publish a dataset version: shards, reports, coverage map and manifest, then an atomic rename."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.report.card import dataset_card
from geosolver_data.report.catalog import rebuild_catalog
from geosolver_data.report.coverage import coverage_map
from geosolver_data.schemas import REJECT_SCHEMA, SPLITS
from geosolver_data.shards import shard_columns, write_shards
from geosolver_data.spec import DatasetSpec
from geosolver_data.store.artifact import Artifact
from geosolver_data.store.atomic import write_text
from geosolver_data.store.home import DatasetLayout
from geosolver_data.store.manifests import DatasetManifest

VERSION_CHARS = 16


def _merge_rejects(files: Sequence[Path], out: Path) -> dict[str, int]:
    tables = [pq.read_table(f) for f in files]
    # regions ingested before rejects carried `final` and `attempts` get nulls there
    table = pa.concat_tables(tables, promote_options="default") if tables else REJECT_SCHEMA.empty_table()
    table = table.sort_by("image_id")
    pq.write_table(table, out, compression="zstd")
    reasons, counts = np.unique(np.asarray(table.column("reason").to_pylist(), dtype=str), return_counts=True)
    return {str(r): int(c) for r, c in zip(reasons, counts, strict=True)}


def publish_dataset(layout: DatasetLayout, spec: DatasetSpec, balanced: pa.Table, balance_report: dict,
                    raw_files: Sequence[Path], reject_files: Sequence[Path]) -> Artifact:
    """Write everything into a staging folder, name it by its content hash, and publish it."""

    def build(staging: Path) -> dict:
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
            "splits": {s: int((splits == s).sum()) for s in SPLITS},
            "shards": [asdict(s) for s in shard_set.shards],
            "content_sha256": shard_set.content_hash,
            "balance": balance_report,
            "dedup_dropped": {r: dropped.count(r) for r in sorted(set(dropped))},
            "rejects": rejects,
            "spec": spec.to_dict(),
            "spec_fingerprint": spec.fingerprint(),
        }
        schema = pq.read_schema(staging / shard_set.shards[0].path)
        write_text(staging / "README.md", dataset_card(DatasetManifest.model_validate(manifest), balanced, schema))
        return manifest

    published = layout.shelf.publish(build)
    rebuild_catalog(layout.home)
    return published
