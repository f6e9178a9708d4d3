"""Jobs, per dataset: `ingest` (one region partition) and `build` (everything after ingest)."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import DatasetAssets
from pipelines.executors import build_executor, ingest_executor
from pipelines.scope import Scope


def dataset_jobs(scope: Scope, built: DatasetAssets) -> tuple:
    """(ingest, build): what `define_asset_job` returns (a type Dagster does not export)."""
    ingest = dg.AssetSelection.assets(built.raw_images)
    return (
        dg.define_asset_job(scope.name("ingest"), selection=ingest,
                            description="Ingest one region (a partition; with sub_partitions, one part of a "
                                        "region) of every source.", executor_def=ingest_executor()),
        dg.define_asset_job(scope.name("build"), selection=ingest.downstream() - ingest,
                            description="Everything after ingest: dedup, cells, balance, shards, fine-tuning, "
                                        "evaluation, indexes.", executor_def=build_executor()),
    )

