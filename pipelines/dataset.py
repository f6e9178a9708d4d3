"""Everything of one dataset, as Definitions: its assets, checks, jobs, refresh schedule and resource."""

import dagster as dg

from pipelines.assets import dataset_assets
from pipelines.checks import dataset_checks
from pipelines.jobs import dataset_jobs
from pipelines.resources import GeosolverResource
from pipelines.schedules import refresh_schedule
from pipelines.scope import Scope


def dataset_definitions(scope: Scope, resource: GeosolverResource) -> dg.Definitions:
    spec = resource.spec()  # read at load: the regions and the cron shape the definitions
    partitions = dg.StaticPartitionsDefinition(spec.region_names)
    built = dataset_assets(scope, partitions)
    ingest, build = dataset_jobs(scope, built)
    return dg.Definitions(
        assets=list(built),
        asset_checks=dataset_checks(scope, built, partitions),
        jobs=[ingest, build],
        schedules=[refresh_schedule(scope, ingest, partitions, spec.refresh_cron)],
        resources={scope.resource_key: resource},
    )
