"""Jobs, per dataset: `ingest` (one region partition) and `build` (everything after ingest)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from pipelines.assets import DatasetAssets
from pipelines.executors import build_executor
from pipelines.scope import Scope

if TYPE_CHECKING:  # what define_asset_job returns; not exported at the top level
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def dataset_jobs(scope: Scope, built: DatasetAssets) -> tuple[UnresolvedAssetJobDefinition, ...]:
    ingest = dg.AssetSelection.assets(built.raw_images)
    return (
        dg.define_asset_job(scope.name("ingest"), selection=ingest,
                            description="Ingest one region (a partition; with sub_partitions, one part of a "
                                        "region) of every source."),
        dg.define_asset_job(scope.name("build"), selection=ingest.downstream() - ingest,
                            description="Everything after ingest: dedup, cells, balance, shards, fine-tuning, "
                                        "evaluation, indexes.", executor_def=build_executor()),
    )

