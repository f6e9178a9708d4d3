"""The Dagster layer, in-process: definitions load, the graph materialises, checks block."""

import json
from pathlib import Path

import dagster as dg
import pytest

from geosolver_data.spec import load_spec
from pipelines.dataset import default
from pipelines.definitions import defs
from pipelines.resources import GeosolverResource
from tests.conftest import TINY_SPEC

ALL = [*default.assets, *default.checks]


def test_definitions_load_with_the_spec_regions_as_partitions() -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"raw_images", "deduplicated_images", "geocells", "balanced_dataset", "dataset_shards",
                    "finetuned_model", "geolocation_eval", "image_embeddings", "embedding_index", "gps_gallery_index"}
    assert default.assets.raw_images.partitions_def.get_partition_keys() == load_spec(TINY_SPEC).region_names
    assert len(graph.asset_check_keys) == 11
    assert defs.resolve_job_def("build") is not None


def _materialize(instance: dg.DagsterInstance, resource: GeosolverResource, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(ALL, instance=instance, resources={"geosolver": resource}, raise_on_error=False, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    instance = dg.DagsterInstance.ephemeral()
    resource = GeosolverResource(home=str(home), spec_path=str(TINY_SPEC))
    for region in load_spec(TINY_SPEC).region_names:
        result = _materialize(instance, resource, selection="raw_images", partition_key=region)
        assert result.success
    result = _materialize(instance, resource, selection="deduplicated_images*")
    return home, instance, resource, result


def test_whole_graph_materialises_with_metadata(built) -> None:
    home, instance, _, result = built
    assert result.success
    shards = result.asset_materializations_for_node("dataset_shards")[0]
    version = shards.metadata["version"].value
    manifest = json.loads((home / "datasets" / "tiny" / version / "manifest.json").read_text())
    assert shards.metadata["dagster/row_count"].value == manifest["rows"] > 0
    schema = shards.metadata["dagster/column_schema"].schema
    assert [c.name for c in schema.columns] == manifest["columns"]  # the UI lists the shard columns
    assert all(c.description for c in schema.columns)  # with what each holds
    assert shards.metadata["coverage_map"].value.startswith("![coverage map](data:image/png;base64,")
    assert shards.metadata["size"].value.endswith(("KB", "MB"))
    dedup = result.asset_materializations_for_node("deduplicated_images")[0].metadata
    assert dedup["candidates"].value == dedup["kept"].value + dedup["dropped"].value
    raw = instance.get_latest_materialization_event(dg.AssetKey("raw_images"))
    assert raw is not None
    latest = instance.get_latest_materialization_event(dg.AssetKey("dataset_shards")).asset_materialization
    assert latest.tags["dagster/data_version"] == version  # the UI's data version is the dataset version
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 10 and all(e.passed for e in evaluations), [e.check_name for e in evaluations
                                                                           if not e.passed]


def test_model_assets_train_and_evaluate(built) -> None:
    home, _, _, result = built
    model = result.asset_materializations_for_node("finetuned_model")[0].metadata
    dataset = result.asset_materializations_for_node("dataset_shards")[0].metadata
    assert model["dataset_version"].value == dataset["version"].value
    manifest = json.loads((home / "models" / model["version"].value / "manifest.json").read_text())
    assert manifest["objectives"]["soft_haversine"]["curve"][-1]["step"] == 12
    for objective, run in manifest["objectives"].items():  # numbers Dagster's Plots tab charts
        assert model[f"final_loss_{objective}"].value == run["final_loss"]
        assert model[f"samples_per_s_{objective}"].value == run["samples_per_s"]
    assert model["training_curves"].value.startswith("![training curves](data:image/png;base64,")
    evaluation = result.asset_materializations_for_node("geolocation_eval")[0].metadata
    assert evaluation["model_version"].value == model["version"].value
    assert evaluation["best_objective"].value in ("soft_haversine", "infonce")
    assert (home / "evals" / evaluation["version"].value / "eval.json").exists()
    assert not (home / "models" / model["version"].value / "eval.json").exists()  # published models stay as they were


def test_index_assets_publish_versioned_artifacts(built) -> None:
    home, instance, _, result = built
    model_version = result.asset_materializations_for_node("finetuned_model")[0].metadata["version"].value
    embedded = result.asset_materializations_for_node("image_embeddings")[0].metadata
    rows = result.asset_materializations_for_node("dataset_shards")[0].metadata["dagster/row_count"].value
    assert embedded["rows"].value == rows  # every shard row embedded once
    for name in ("embedding_index", "gps_gallery_index"):
        meta = result.asset_materializations_for_node(name)[0].metadata
        version = meta["version"].value
        manifest = json.loads((home / "indexes" / version / "manifest.json").read_text())
        assert manifest["model_version"] == model_version and meta["recall_at_10"].value >= 0.95
        latest = instance.get_latest_materialization_event(dg.AssetKey(name)).asset_materialization
        assert latest.tags["dagster/data_version"] == version


def test_rerun_gives_the_same_version(built) -> None:
    _, instance, resource, first = built
    again = _materialize(instance, resource, selection="dataset_shards")
    v1 = first.asset_materializations_for_node("dataset_shards")[0].metadata["version"].value
    meta = again.asset_materializations_for_node("dataset_shards")[0].metadata
    assert meta["version"].value == v1 and meta["new_version"].value is False


def test_a_failing_blocking_check_fails_the_run(built) -> None:
    home, instance, resource, first = built
    version = first.asset_materializations_for_node("dataset_shards")[0].metadata["version"].value
    shard = next((home / "datasets" / "tiny" / version / "shards").glob("*.parquet"))
    original = shard.read_bytes()
    try:
        shard.write_bytes(original[:-4] + b"XXXX")  # a damaged file the manifest no longer matches
        result = _materialize(instance, resource, selection=dg.AssetSelection.checks_for_assets(
            default.assets.dataset_shards))
        failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
        assert "manifest_matches_files" in failed
    finally:
        shard.write_bytes(original)


def test_downstream_before_ingest_fails_with_a_clear_message(tmp_path: Path) -> None:
    resource = GeosolverResource(home=str(tmp_path), spec_path=str(TINY_SPEC))
    result = _materialize(dg.DagsterInstance.ephemeral(), resource, selection="deduplicated_images")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "Materialise raw_images for every region partition first" in str(failure.step_failure_data.error)


def test_check_problems_quote_image_ids_as_text() -> None:
    """A check's problems name image ids, which come from sources: in the UI they are text, not markup."""
    from pipelines.checks import _result

    shown = _result(['url:<img src=x onerror=alert(1)>: coordinates out of range']).metadata["first_problems"]
    assert "<img" not in shown.md_str and "&lt;img src=x onerror=alert(1)&gt;" in shown.md_str
