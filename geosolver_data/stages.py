"""One plain function per dataset stage: what each Dagster asset calls (and what scripts can call).

Each reads its inputs from the dataset's layout, writes its outputs there, and returns the
figures worth reporting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.balance import balance, split_blocks
from geosolver_data.dedup import DedupStats, deduplicate
from geosolver_data.geocells import assign_geocells, h3_column
from geosolver_data.ingest.accounting import Accounting, account, load_listing
from geosolver_data.ingest.engine import IngestStats, IngestTask, ingest
from geosolver_data.ingest.ledger import Ledger
from geosolver_data.ingest.progress import Progress
from geosolver_data.ingest.sources import Opening, open_source
from geosolver_data.parts import IngestUnit
from geosolver_data.publish import publish_dataset
from geosolver_data.schemas import split_name
from geosolver_data.spec import DatasetSpec, SourceSpec
from geosolver_data.store.artifact import Artifact, ArtifactMissing
from geosolver_data.store.atomic import atomic_path, write_json
from geosolver_data.store.home import DatasetLayout

Log = Callable[[str], None]


def ledger_key(spec: DatasetSpec, src: SourceSpec) -> str:
    """What decides an ingest's content: the source's content settings, the image work, the regions."""
    blob = json.dumps([src.content_key(), spec.image.model_dump(), [r.bbox for r in spec.regions],
                       spec.region_names], sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ingest_region(spec: DatasetSpec, layout: DatasetLayout, region: str, log: Log = print,
                  part: int = 0) -> dict[str, IngestStats]:
    """Ingest every source of the spec for one region (or, with `sub_partitions`, one part of it),
    resuming from each source's ledger. A second process ingesting the same region and source waits
    for the first, then finds its work done."""
    unit = spec.ingest_unit(region, part)  # fails clearly on an unknown region or part
    results = {}
    for src in spec.sources:
        ledger = Ledger(layout.ledger(unit.folder, src.label, ledger_key(spec, src)))
        with ledger.locked(log):
            results[src.label] = _ingest_source(spec, layout, src, unit, ledger, log)
    return results


def _ingest_source(spec: DatasetSpec, layout: DatasetLayout, src: SourceSpec, unit: IngestUnit, ledger: Ledger,
                   log: Log) -> IngestStats:
    source = open_source(Opening(spec, layout, src, unit.region, ledger, log))
    task = IngestTask(region=unit.region, regions=spec.regions, image=spec.image, source=src.label,
                      owns_strays=source.owns_strays, license=src.license, creator=src.creator,
                      content_retries=src.content_retries, unit=unit)
    stats = ingest(task, source, ledger, layout.region_files(unit.folder, src.label), spec.workers,
                   Progress(f"{unit.name}/{src.label}", log))
    assert stats.accounting is not None
    if src.type == "mapillary" and src.watermark and stats.listing_complete and stats.total_to_retry == 0:
        watermark = ledger.max_captured_at_ms()
        if watermark is not None:
            ledger.save_state({**ledger.state(), "watermark_ms": watermark})
    acc = stats.accounting
    log(f"{unit.name}/{src.label}: {stats.ingested} new images, {sum(stats.rejected.values())} rejected, "
        f"{stats.already_done} already done, {stats.retries} retries; of {acc.listed} listed: {acc.stored} stored, "
        f"{acc.rejected} rejected, {acc.to_retry} to retry next run; {stats.total_rows} images in total")
    return stats


def region_accounting(spec: DatasetSpec, layout: DatasetLayout, region: str, part: int = 0) -> dict[str, Accounting]:
    """Where every candidate of the region's (or part's) last run of each source ended, from the files alone."""
    unit = spec.ingest_unit(region, part)
    found = {}
    for src in spec.sources:
        files = layout.region_files(unit.folder, src.label)
        if not all(p.exists() for p in (files.listing, files.raw, files.rejects)):
            raise ArtifactMissing(f"raw_images[{unit.name}] has not been materialised for source {src.label!r}")
        found[src.label] = account(load_listing(files.listing), files.raw, files.rejects)
    return found


def _expected(spec: DatasetSpec, path_of: Callable[[str, str], Path]) -> list[Path]:
    paths = [path_of(u.folder, s.label) for u in spec.ingest_units() for s in spec.sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        what, keys = ("region", "region") if spec.sub_partitions == 1 else ("region part", "region|part")
        raise ArtifactMissing(
            f"raw_images is missing for {len(missing)} {what}/source pair(s): {missing[:5]}. "
            f"Materialise raw_images for every {keys} partition first."
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
        raise ArtifactMissing("deduplicated_images has not been materialised")
    table = assign_geocells(layout.dedup_kept, layout.geocells, spec.h3_resolutions)
    countries = table.column("country").unique()
    return {"rows": table.num_rows, "countries": len(countries),
            "cells": {r: len(table.column(f"h3_r{r}").unique()) for r in spec.h3_resolutions}}


def balance_dataset(spec: DatasetSpec, layout: DatasetLayout) -> dict:
    if not layout.geocells.exists():
        raise ArtifactMissing("geocells has not been materialised")
    result = balance(pq.read_table(layout.geocells), spec.balance, previous_splits(spec, layout))
    with atomic_path(layout.balanced) as tmp:
        pq.write_table(result.table, tmp, compression="zstd")
    write_json(layout.balance_report, result.report)
    return result.report


SPLIT_SETTINGS = ("resolution", "split_resolution", "splits", "seed")


def previous_splits(spec: DatasetSpec, layout: DatasetLayout) -> dict[int, str]:
    """Split block -> split in the latest published version, when it was built with the same split
    settings: those blocks keep their split, so no image moves from test to train on a refresh."""
    try:
        version = layout.latest_version()
    except ArtifactMissing:  # a damaged pointer: the newest intact version stands in (publishing rewrites it)
        intact = layout.shelf.all()
        version = intact[-1].version if intact else None
    if version is None or not layout.shelf.exists(version):
        return {}
    manifest = layout.shelf.get(version).info
    before = dict(manifest.spec.get("balance", {}))
    before["splits"] = {split_name(k): v for k, v in before.get("splits", {}).items()}  # an older version's `val`
    if any(before.get(k) != spec.balance.model_dump()[k] for k in SPLIT_SETTINGS):
        return {}
    column = h3_column(spec.balance.resolution)
    table = pa.concat_tables(pq.read_table(path, columns=[column, "lat", "lon", "split"])
                             for path in manifest.shard_paths(layout.version_dir(version)))
    blocks = split_blocks(table.column(column).to_numpy(), table.column("lat").to_numpy(),
                          table.column("lon").to_numpy(), spec.balance).tolist()
    return dict(zip(blocks, map(split_name, table.column("split").to_pylist()), strict=True))


def publish(spec: DatasetSpec, layout: DatasetLayout) -> Artifact:
    if not layout.balanced.exists():
        raise ArtifactMissing("balanced_dataset has not been materialised")
    report = json.loads(layout.balance_report.read_text())
    return publish_dataset(layout, spec, pq.read_table(layout.balanced), report,
                           raw_files(spec, layout), reject_files(spec, layout))


def latest_dataset(layout: DatasetLayout) -> str:
    version = layout.latest_version()
    if version is None:
        raise ArtifactMissing("dataset_shards has not been materialised: no dataset version is published")
    return version


def build_dataset(spec: DatasetSpec, layout: DatasetLayout, log: Log = print) -> Artifact:
    """Every dataset stage in order, without Dagster: for scripts, notebooks and tests."""
    for unit in spec.ingest_units():
        ingest_region(spec, layout, unit.region, log, unit.part)
    deduplicate_dataset(spec, layout)
    assign_cells(spec, layout)
    balance_dataset(spec, layout)
    return publish(spec, layout)
