"""The scheduled refresh: re-ingest every region on the spec's cron (weekly by default).

Everything downstream follows by declarative automation (see `automation` in assets.py): it runs
once its upstream has new materialisations and none is still in progress, and a rebuild on
unchanged content publishes no new version.
"""

import dagster as dg

from pipelines.jobs import ingest_job
from pipelines.partitions import region_partitions
from pipelines.resources import geosolver


@dg.schedule(cron_schedule=geosolver.spec().refresh_cron, job=ingest_job, execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def dataset_refresh(context: dg.ScheduleEvaluationContext):
    """One ingest run per region; the run key makes a retried tick idempotent."""
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    for region in region_partitions.get_partition_keys():
        yield dg.RunRequest(run_key=f"refresh-{stamp}-{region}", partition_key=region)
