"""Jobs, in their own module so schedules and definitions can both import them."""

import dagster as dg

from pipelines import assets

ingest_job = dg.define_asset_job("ingest", selection=[assets.raw_images],
                                 description="Ingest one region (a partition) of every source.")
build_job = dg.define_asset_job(
    "build",
    selection=dg.AssetSelection.assets(assets.raw_images).downstream() - dg.AssetSelection.assets(assets.raw_images),
    description="Everything after ingest: dedup, cells, balance, shards, fine-tuning, evaluation, indexes.",
)
