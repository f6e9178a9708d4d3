"""One plain function per dataset stage: what each Dagster asset calls (and what scripts can call).

Each reads its inputs from the dataset's layout, writes its outputs there, and returns the
figures worth reporting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from geosolver_data.balance import balance
from geosolver_data.dedup import DedupStats, deduplicate
from geosolver_data.geocells import assign_geocells
from geosolver_data.ingest import IngestStats, IngestTask, ingest
from geosolver_data.layout import DatasetLayout, atomic_path, write_json
from geosolver_data.publish import Published, publish_dataset
from geosolver_data.sources.local import LocalFile, list_photos
from geosolver_data.sources.synthetic import synthesize_region
from geosolver_data.spec import DatasetSpec, SourceSpec

Log = Callable[[str], None]


class MissingInputError(RuntimeError):
    """An upstream stage has not been run (or not for every region)."""


def _source_files(layout: DatasetLayout, spec: DatasetSpec, src: SourceSpec,
                  region: str) -> tuple[list[LocalFile], bool]:
    """The candidate files for this region, and whether this region records their strays.

    A local folder is read by every region (each keeps its own photos; the first records those of
    no region); a synthetic source writes and reads one subfolder per region.
    """
    if src.type == "synthetic":
        root = Path(src.path) if src.path else layout.synthetic_root / src.label
        synthesize_region(root, spec.region(region), spec.regions, src)
        return list(list_photos(root, src.label, "folder", under=region)), True
    files = list(list_photos(Path(src.path).expanduser(), src.label, src.sequence_from))
    return files, region == spec.regions[0].name


def ingest_region(spec: DatasetSpec, layout: DatasetLayout, region: str, log: Log = print) -> dict[str, IngestStats]:
    """Ingest every source of the spec for one region; returns stats per source."""
    spec.region(region)  # fails clearly on an unknown region
    results = {}
    for src in spec.sources:
        items, owns_strays = _source_files(layout, spec, src, region)
        log(f"{src.label}: {len(items)} candidate files")
        task = IngestTask(region=region, regions=spec.regions, image=spec.image, source=src.label,
                          owns_strays=owns_strays, license=src.license, creator=src.creator)

        def progress(done: int, total: int, label: str = src.label) -> None:
            log(f"{label}: {done}/{total} files ({100 * done / max(total, 1):.0f}%)")

        results[src.label] = ingest(task, items, layout.raw_images(region, src.label),
                                    layout.raw_rejects(region, src.label), spec.workers, progress)
    return results


def _expected(spec: DatasetSpec, path_of: Callable[[str, str], Path]) -> list[Path]:
    paths = [path_of(r, s.label) for r in spec.region_names for s in spec.sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise MissingInputError(
            f"raw_images is missing for {len(missing)} region/source pair(s): {missing[:5]}. "
            "Materialise raw_images for every region partition first."
        )
    return paths


def raw_files(spec: DatasetSpec, layout: DatasetLayout) -> list[Path]:
    return _expected(spec, layout.raw_images)


def reject_files(spec: DatasetSpec, layout: DatasetLayout) -> list[Path]:
    return _expected(spec, layout.raw_rejects)


def deduplicate_dataset(spec: DatasetSpec, layout: DatasetLayout) -> DedupStats:
    return deduplicate(raw_files(spec, layout), spec.dedup, layout.dedup_kept, layout.dedup_dropped)


def assign_cells(spec: DatasetSpec, layout: DatasetLayout) -> dict:
    if not layout.dedup_kept.exists():
        raise MissingInputError("deduplicated_images has not been materialised")
    table = assign_geocells(layout.dedup_kept, layout.geocells, spec.h3_resolutions)
    countries = table.column("country").unique()
    return {"rows": table.num_rows, "countries": len(countries),
            "cells": {r: len(table.column(f"h3_r{r}").unique()) for r in spec.h3_resolutions}}


def balance_dataset(spec: DatasetSpec, layout: DatasetLayout) -> dict:
    if not layout.geocells.exists():
        raise MissingInputError("geocells has not been materialised")
    result = balance(pq.read_table(layout.geocells), spec.balance)
    with atomic_path(layout.balanced) as tmp:
        pq.write_table(result.table, tmp, compression="zstd")
    write_json(layout.balance_report, result.report)
    return result.report


def publish(spec: DatasetSpec, layout: DatasetLayout) -> Published:
    if not layout.balanced.exists():
        raise MissingInputError("balanced_dataset has not been materialised")
    report = json.loads(layout.balance_report.read_text())
    return publish_dataset(layout, spec, pq.read_table(layout.balanced), report,
                           raw_files(spec, layout), reject_files(spec, layout))


def latest_dataset(layout: DatasetLayout) -> str:
    version = layout.latest_version()
    if version is None:
        raise MissingInputError("dataset_shards has not been materialised: no dataset version is published")
    return version


def build_dataset(spec: DatasetSpec, layout: DatasetLayout, log: Log = print) -> Published:
    """Every dataset stage in order, without Dagster: for scripts, notebooks and tests."""
    for region in spec.region_names:
        ingest_region(spec, layout, region, log)
    deduplicate_dataset(spec, layout)
    assign_cells(spec, layout)
    balance_dataset(spec, layout)
    return publish(spec, layout)
