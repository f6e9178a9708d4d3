"""Dataset assets: raw_images -> deduplicated_images -> geocells -> balanced_dataset -> dataset_shards."""

import dagster as dg

from geosolver_data import stages
from pipelines.metadata import balance_table, counts_table
from pipelines.partitions import region_partitions
from pipelines.resources import GeosolverResource

GROUP = "dataset"


@dg.asset(partitions_def=region_partitions, group_name=GROUP, kinds={"parquet"})
def raw_images(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Photos of one region, decoded, resized, re-encoded and hashed once; failures go to rejects."""
    spec, layout = geosolver.spec(), geosolver.layout()
    stats = stages.ingest_region(spec, layout, context.partition_key, log=context.log.info)
    rejected = {f"{src}/{reason}": n for src, s in stats.items() for reason, n in s.rejected.items()}
    return dg.MaterializeResult(metadata={
        "ingested": sum(s.ingested for s in stats.values()),
        "rejected": sum(rejected.values()),
        "candidates": sum(s.candidates for s in stats.values()),
        "image_bytes": sum(s.bytes_written for s in stats.values()),
        "rejects_by_reason": dg.MetadataValue.md(counts_table(rejected, "source/reason")),
        "path": dg.MetadataValue.path(str(layout.work / "raw_images" / context.partition_key)),
    })


@dg.asset(deps=[raw_images], group_name=GROUP, kinds={"duckdb", "parquet"})
def deduplicated_images(geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Exact, perceptual and same-place duplicates removed; every drop reported with its reason."""
    spec, layout = geosolver.spec(), geosolver.layout()
    stats = stages.deduplicate_dataset(spec, layout)
    return dg.MaterializeResult(metadata={
        "candidates": stats.candidates,
        "kept": stats.kept,
        "dropped": sum(stats.dropped.values()),
        "dropped_by_reason": dg.MetadataValue.md(counts_table(stats.dropped, "reason")),
        "dropped_report": dg.MetadataValue.path(str(layout.dedup_dropped)),
    })


@dg.asset(deps=[deduplicated_images], group_name=GROUP, kinds={"parquet"})
def geocells(geosolver: GeosolverResource) -> dg.MaterializeResult:
    """H3 cells at every configured resolution and an ISO country code per image."""
    spec, layout = geosolver.spec(), geosolver.layout()
    stats = stages.assign_cells(spec, layout)
    return dg.MaterializeResult(metadata={
        "rows": stats["rows"],
        "countries": stats["countries"],
        "cells_by_resolution": dg.MetadataValue.md(counts_table(stats["cells"], "resolution")),
    })


@dg.asset(deps=[geocells], group_name=GROUP, kinds={"parquet"})
def balanced_dataset(geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Per-cell tempered quotas, deterministic selection, spatially disjoint train/val/test splits."""
    report = stages.balance_dataset(geosolver.spec(), geosolver.layout())
    return dg.MaterializeResult(metadata={
        "rows": report["after"]["images"],
        "cells": report["after"]["cells"],
        "gini_before": report["before"]["gini"],
        "gini_after": report["after"]["gini"],
        "balance": dg.MetadataValue.md(balance_table(report)),
        "splits": dg.MetadataValue.json(report["splits"]),
    })


@dg.asset(deps=[balanced_dataset], group_name=GROUP, kinds={"parquet"})
def dataset_shards(geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Parquet shards and manifest.json: one immutable dataset version, named by its content hash."""
    published = stages.publish(geosolver.spec(), geosolver.layout())
    m = published.manifest
    return dg.MaterializeResult(
        data_version=dg.DataVersion(published.version),
        metadata={
            "version": published.version,
            "new_version": published.new,
            "rows": m["rows"],
            "shards": len(m["shards"]),
            "bytes": sum(s["bytes"] for s in m["shards"]),
            "splits": dg.MetadataValue.json(m["splits"]),
            "path": dg.MetadataValue.path(str(published.path)),
            "manifest": dg.MetadataValue.path(str(published.path / "manifest.json")),
            "coverage_map": dg.MetadataValue.path(str(published.path / "coverage.png")),
        },
    )
