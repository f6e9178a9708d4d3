"""The code location: `dagster dev` and `dagster asset materialize -m pipelines.definitions` load this."""

import dagster as dg

from pipelines import assets, checks
from pipelines.resources import GeosolverResource

ingest_job = dg.define_asset_job("ingest", selection=[assets.raw_images],
                                 description="Ingest one region (a partition) of every source.")
build_job = dg.define_asset_job(
    "build",
    selection=dg.AssetSelection.assets(assets.raw_images).downstream() - dg.AssetSelection.assets(assets.raw_images),
    description="Everything after ingest: dedup, cells, balance, shards, fine-tuning, evaluation.",
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[ingest_job, build_job],
    resources={"geosolver": GeosolverResource()},
)
