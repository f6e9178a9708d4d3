"""The code location: `dagster dev` and `dagster asset materialize -m pipelines.definitions` load this."""

import dagster as dg

from pipelines import assets, checks
from pipelines.executors import executor_from_env
from pipelines.jobs import build_job, ingest_job
from pipelines.resources import geosolver
from pipelines.schedules import dataset_refresh
from pipelines.sensors import automation

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[ingest_job, build_job],
    schedules=[dataset_refresh],
    sensors=[automation],
    executor=executor_from_env(),
    resources={"geosolver": geosolver},
)
