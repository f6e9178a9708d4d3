"""The scheduled refresh and the declarative automation that carries it downstream."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from geosolver_data.spec import load_spec
from pipelines.dataset import default
from pipelines.definitions import defs
from pipelines.resources import GeosolverResource
from tests.conftest import TINY_SPEC


def test_refresh_schedule_requests_one_ingest_run_per_region() -> None:
    assert default.schedule.cron_schedule == load_spec(TINY_SPEC).refresh_cron == "0 3 * * 1"
    when = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    requests = list(default.schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == load_spec(TINY_SPEC).region_names
    assert requests[0].run_key == "refresh-20261130T0300-europe"
    assert defs.resolve_schedule_def("dataset_refresh").job_name == "ingest"


def test_downstream_waits_for_every_region_then_rebuilds(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resource = GeosolverResource(home=str(tmp_path), spec_path=str(TINY_SPEC))
    dedup = dg.AssetKey("deduplicated_images")
    downstream = [dg.AssetKey(k) for k in ("deduplicated_images", "geocells", "balanced_dataset", "dataset_shards",
                                           "finetuned_model", "geolocation_eval", "image_embeddings",
                                           "embedding_index", "gps_gallery_index")]
    cursor = None

    def requested() -> set[dg.AssetKey]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        return {key for key in downstream if result.get_num_requested(key)}

    europe, americas = load_spec(TINY_SPEC).region_names
    assert dedup not in requested()
    dg.materialize([default.assets.raw_images], partition_key=europe, instance=instance,
                   resources={"geosolver": resource})
    assert dedup not in requested()  # one region is still missing
    dg.materialize([default.assets.raw_images], partition_key=americas, instance=instance,
                   resources={"geosolver": resource})
    assert requested() == set(downstream)  # the whole chain, in one tick (Dagster runs it in order)
    assert requested() == set()  # handled: nothing more until an input changes again
