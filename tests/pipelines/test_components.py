"""Several datasets in one code location: two GeosolverDataset instances configured by defs.yaml (as
`dg scaffold defs` writes them) beside the default dataset, each with its own keys, lineage,
partitions, jobs, schedule and home; materialising one leaves the other untouched."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipelines.dataset import default
from tests.conftest import TINY_SPEC

DATASETS = {"osv_eu": ["europe", "americas"], "commons_b": ["europe"]}
DATA = ["raw_images", "deduplicated_images", "geocells", "balanced_dataset", "dataset_shards"]


def _project(root: Path) -> Path:
    """A dg project whose defs folder holds one GeosolverDataset instance per dataset."""
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\n'
                                         'root_module = "two_datasets"\ndefs_module = "two_datasets.defs"\n')
    defs = root / "two_datasets" / "defs"
    defs.mkdir(parents=True)
    (root / "two_datasets" / "__init__.py").write_text("")
    (defs / "__init__.py").write_text("")
    tiny = yaml.safe_load(TINY_SPEC.read_text())
    for name, regions in DATASETS.items():
        (defs / name).mkdir()
        spec = {**tiny, "name": name, "regions": [r for r in tiny["regions"] if r["name"] in regions],
                "refresh_cron": "0 3 * * 1" if name == "osv_eu" else "0 4 1 * *"}
        (defs / name / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        (defs / name / "defs.yaml").write_text(yaml.safe_dump({
            "type": "pipelines.components.GeosolverDataset", "attributes": {"spec": f"{name}.yaml"}}))
    return root


@pytest.fixture
def code_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.setenv("GEOSOLVER_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(_project(tmp_path / "project")))
    try:
        components = dg.load_from_defs_folder(path_within_project=tmp_path / "project")
        yield dg.Definitions.merge(default.definitions(), components)
    finally:
        for module in [m for m in sys.modules if m.startswith("two_datasets")]:
            del sys.modules[module]


def test_two_dataset_components_coexist_with_the_default_dataset(code_location: dg.Definitions) -> None:
    repo = code_location.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    for prefix in DATASETS:
        wanted = [*DATA, "finetuned_model", "geolocation_eval", "embedding_index", "gps_gallery_index"]
        assert {f"{prefix}/{name}" for name in wanted} <= keys
    assert {"raw_images", "dataset_shards"} <= keys  # the default dataset keeps its plain names
    graph = repo.asset_graph
    assert graph.get(dg.AssetKey(["osv_eu", "deduplicated_images"])).parent_keys == {
        dg.AssetKey(["osv_eu", "raw_images"])}  # lineage stays within its dataset
    assert graph.get(dg.AssetKey(["commons_b", "raw_images"])).partitions_def.get_partition_keys() == ["europe"]
    assert graph.get(dg.AssetKey(["osv_eu", "raw_images"])).partitions_def.get_partition_keys() == [
        "europe", "americas"]
    assert {graph.get(dg.AssetKey([p, "geocells"])).group_name for p in DATASETS} == {
        "osv_eu_dataset", "commons_b_dataset"}
    schedules = {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert schedules == {"dataset_refresh": "0 3 * * 1", "osv_eu_dataset_refresh": "0 3 * * 1",
                         "commons_b_dataset_refresh": "0 4 1 * *"}
    assert {"ingest", "build", "osv_eu_ingest", "osv_eu_build", "commons_b_ingest", "commons_b_build"} <= set(
        repo.job_names)
    checks = {k.to_user_string() for k in repo.asset_checks_defs_by_key}
    assert "commons_b/raw_images:every_listed_image_accounted_for" in checks


def test_each_dataset_builds_in_its_own_home(code_location: dg.Definitions, tmp_path: Path) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        for region in DATASETS["osv_eu"]:
            ingest = code_location.resolve_job_def("osv_eu_ingest")
            assert ingest.execute_in_process(partition_key=region, instance=instance).success
        built = code_location.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["osv_eu", n]) for n in DATA[1:]])
        assert built.success
        assert instance.get_latest_materialization_event(dg.AssetKey(["osv_eu", "dataset_shards"])) is not None
        for untouched in (dg.AssetKey(["commons_b", "raw_images"]), dg.AssetKey("raw_images")):
            assert not instance.get_materialized_partitions(untouched)
    home = tmp_path / "home"
    assert list((home / "osv_eu" / "datasets" / "osv_eu").glob("*/manifest.json"))  # $GEOSOLVER_HOME/<prefix>
    assert not (home / "commons_b").exists() and not (home / "datasets").exists()
