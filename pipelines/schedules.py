"""The scheduled refresh: re-ingest every region on the spec's cron (weekly by default).

Everything downstream follows by declarative automation (see `automation` in assets.py and the
sensor in sensors.py): it runs once its upstream has new materialisations and none is still in
progress, and a rebuild on unchanged content publishes no new version.
"""

from __future__ import annotations

import dagster as dg

from pipelines.scope import Scope


def refresh_schedule(scope: Scope, job: object, partitions: dg.PartitionsDefinition,
                     cron: str) -> dg.ScheduleDefinition:
    """`job`: the ingest job, as `define_asset_job` returns it (a type Dagster does not export)."""
    @dg.schedule(name=scope.name("dataset_refresh"), cron_schedule=cron,
                 job=job, execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED)
    def refresh(context: dg.ScheduleEvaluationContext):
        """One ingest run per region; the run key makes a retried tick idempotent."""
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        for region in partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"refresh-{stamp}-{region}", partition_key=region)

    return refresh

