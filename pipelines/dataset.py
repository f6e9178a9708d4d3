"""Everything of one dataset: its assets, checks, jobs, refresh schedule and resource, built by the
same code for the default dataset (GEOSOLVER_SPEC's, plain names) and for every GeosolverDataset
component instance (under its prefix)."""

from typing import NamedTuple

import dagster as dg

from pipelines.assets import DatasetAssets, dataset_assets
from pipelines.checks import dataset_checks
from pipelines.hub_assets import hub_assets
from pipelines.jobs import dataset_jobs
from pipelines.partitions import ingest_partitions
from pipelines.resources import GeosolverResource, geosolver
from pipelines.schedules import refresh_schedule
from pipelines.scope import DEFAULT, Scope


class Dataset(NamedTuple):
    assets: DatasetAssets
    checks: list[dg.AssetChecksDefinition]
    jobs: tuple  # ingest (one region partition), build (everything after ingest)
    schedule: dg.ScheduleDefinition
    resources: dict[str, GeosolverResource]
    published: list[dg.AssetsDefinition]  # the opt-in `publish:` assets (none unless the spec names a repo)

    def definitions(self) -> dg.Definitions:
        return dg.Definitions(assets=[*self.assets, *self.published], asset_checks=self.checks, jobs=list(self.jobs),
                              schedules=[self.schedule], resources=self.resources)


def build_dataset(scope: Scope, resource: GeosolverResource) -> Dataset:
    spec = resource.spec()  # read at load: the regions and the cron shape the definitions
    partitions = ingest_partitions(spec)  # a backfill fans out one run per region (or region part)
    built = dataset_assets(scope, partitions, spec.compute)
    ingest, build = dataset_jobs(scope, built)
    return Dataset(assets=built, checks=dataset_checks(scope, built, partitions), jobs=(ingest, build),
                   schedule=refresh_schedule(scope, ingest, partitions, spec.refresh_cron),
                   resources={scope.resource_key: resource}, published=hub_assets(scope, built, spec.publish))


# The default dataset (GEOSOLVER_SPEC, else the demo): what `dagster asset materialize --select
# raw_images` and the tests name.
default = build_dataset(DEFAULT, geosolver)
