"""Sub-partitions under Dagster: a spec with `sub_partitions` gets region × part partitions; the parts,
materialised in any order with their accounting checks, publish the version an unsplit ingest does."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from geosolver_data import cli as data_cli
from geosolver_data import stages
from geosolver_data.spec import load_spec
from geosolver_data.store.home import DatasetLayout
from pipelines.dataset import build_dataset
from pipelines.partitions import ingest_unit
from pipelines.resources import GeosolverResource
from pipelines.scope import Scope
from tests.conftest import TINY_SPEC

PARTS = 4


def test_parts_through_dagster_publish_the_unsplit_version(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec_path = tmp_path / "tiny4.yaml"
    spec_path.write_text(yaml.safe_dump({**yaml.safe_load(TINY_SPEC.read_text()), "sub_partitions": PARTS}))
    resource = GeosolverResource(home=str(tmp_path / "split"), spec_path=str(spec_path))
    dataset = build_dataset(Scope("split"), resource)
    partitions = dataset.assets.raw_images.partitions_def
    assert isinstance(partitions, dg.MultiPartitionsDefinition)
    keys = [str(k) for k in partitions.get_partition_keys()]
    assert sorted(keys) == sorted(f"{r}|{p}" for r in ("europe", "americas") for p in range(PARTS))
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 12, 7, 3, tzinfo=UTC),
                                        repository_def=dataset.definitions().get_repository_def())
    requests = dataset.schedule.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == sorted(keys)  # a refresh runs every part
    assert "refresh-20261207T0300-europe|2" in {r.run_key for r in requests}

    data_cli.main(["--spec", str(spec_path), "partitions"])  # what `make run` launches, one run each
    assert capsys.readouterr().out.split() == [u.name for u in load_spec(spec_path).ingest_units()]

    instance = dg.DagsterInstance.ephemeral()
    everything = [*dataset.assets, *dataset.checks]
    random.Random(3).shuffle(keys)
    for key in keys:
        result = dg.materialize(everything, instance=instance, resources={"split_geosolver": resource},
                                selection=[dataset.assets.raw_images.key], partition_key=key)
        assert result.success
        (check,) = result.get_asset_check_evaluations()
        assert check.passed and check.partition == key  # the accounting check runs per part
        unit = ingest_unit(load_spec(spec_path), key)
        meta = result.asset_materializations_for_node("split__raw_images")[0].metadata
        assert meta["path"].value.endswith(f"raw_images/{unit.folder}")
    built = dg.materialize(everything, instance=instance, resources={"split_geosolver": resource},
                           selection=dg.AssetSelection.assets(dataset.assets.deduplicated_images).downstream()
                           - dg.AssetSelection.groups("split_model", "split_index"))
    assert built.success
    version = built.asset_materializations_for_node("split__dataset_shards")[0].metadata["version"].value

    whole = load_spec(TINY_SPEC)
    assert stages.build_dataset(whole, DatasetLayout(tmp_path / "whole", whole.name), log=lambda _: None).version \
        == version
    layout = DatasetLayout(tmp_path / "split", "tiny")
    stored = [pq.read_metadata(layout.raw_images(u.folder, "synthetic")).num_rows
              for u in load_spec(spec_path).ingest_units()]
    assert min(stored) > 0  # every part holds some of the demo's photos
