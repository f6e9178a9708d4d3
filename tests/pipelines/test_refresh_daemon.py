"""The scheduled refresh end to end under the real daemon: a schedule tick (through GraphQL, as the
UI's "Test schedule" launches it) ingests every region, the automation sensor (running by default)
rebuilds the dataset and, because it changed, the model, its evaluation and the indexes; a tick with
nothing new publishes nothing new."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from tests.data.images_util import encode, noise_image
from tests.pipelines.servers import dagster_servers, schedule_tick, sensor_states, wait_run

DOWNSTREAM = ("dataset_shards", "finetuned_model", "geolocation_eval", "embedding_index", "gps_gallery_index")
PLACES = [(48.85 + i * 0.9, 2.35 + i * 1.3) for i in range(12)] + [(40.7 - i * 1.1, -74.0 + i * 0.8) for i in range(12)]

pytestmark = pytest.mark.long


def _photos(folder: Path, places: list[tuple[float, float]], first: int = 0) -> None:
    for i, (lat, lon) in enumerate(places, start=first):
        (folder / f"p{i:03d}.jpg").write_bytes(encode(noise_image(i, (160, 120)), lat=lat, lon=lon))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    root = tmp_path_factory.mktemp("refresh")
    photos = root / "photos"
    photos.mkdir()
    _photos(photos, PLACES)
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "refresh", "workers": 1,
        "regions": [{"name": "europe", "bbox": [-11.0, 35.0, 32.0, 61.0]},
                    {"name": "americas", "bbox": [-125.0, -40.0, -34.0, 50.0]}],
        "sources": [{"type": "local", "path": str(photos), "license": "CC0"}],
        "balance": {"resolution": 3, "cap": 100, "target_size": 1000, "split_resolution": 1},
        "shards": {"target_mb": 1, "row_group_rows": 8},
        "model": {"base": "tiny-64", "embed_dim": 16, "loc_features": 16, "loc_hidden": 32, "loc_layers": 2,
                  "objectives": ["soft_haversine"], "steps": 3, "batch_size": 4, "warmup_steps": 1,
                  "queue_size": 8, "checkpoint_every": 3, "gallery_resolution": 3},
    }))
    # What is under test is the schedule, the daemon and the sensor, not the executor (test_ui runs the
    # default one): the sensor evaluates every 5 s instead of 30, and each run's steps share one
    # process, so the model steps import torch once per run rather than once per step.
    with dagster_servers(root, spec, GEOSOLVER_AUTOMATION_INTERVAL_S="5", GEOSOLVER_EXECUTOR="in_process") as running:
        yield running


def _versions(home: Path, kind: str) -> set[str]:
    folder = {"dataset": home / "datasets" / "refresh", "model": home / "models"}[kind]
    return {p.parent.name for p in folder.glob("*/manifest.json")} if folder.exists() else set()


def _chain_after(dagster_home: Path, since: float, root: Path, timeout_s: float = 300) -> dict[str, dg.EventLogEntry]:
    """Wait until every downstream asset has a materialisation newer than `since`."""
    deadline = time.monotonic() + timeout_s
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        while time.monotonic() < deadline:
            latest = {name: instance.get_latest_materialization_event(dg.AssetKey(name)) for name in DOWNSTREAM}
            if all(e is not None and e.timestamp > since for e in latest.values()):
                return latest
            failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
            assert not failed, f"a run failed: {failed[0].run_id}; {(root / 'daemon.log').read_text()[-3000:]}"
            time.sleep(2)
    pytest.fail(f"the downstream chain did not follow the schedule within {timeout_s} s; "
                f"daemon log: {(root / 'daemon.log').read_text()[-3000:]}")


def _tick(port: int, root: Path) -> float:
    """One tick of the refresh schedule; returns when its ingest runs (one per region) have succeeded."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    started = time.time()
    runs = schedule_tick(port, client, "dataset_refresh")
    assert len(runs) == 2  # one ingest run per region
    for run_id in runs:
        wait_run(client, run_id, root)
    return started


def test_a_schedule_tick_reaches_the_model_and_an_unchanged_tick_publishes_nothing(
        daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    port, dagster_home, root = daemon
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))  # dagster.yaml names its storage by it
    home = root / "geosolver"
    assert sensor_states(port) == {"geosolver_automation": "RUNNING"}  # on without anyone switching it on

    _chain_after(dagster_home, _tick(port, root), root)  # the first tick builds everything
    assert len(_versions(home, "dataset")) == 1 and len(_versions(home, "model")) == 1

    _photos(root / "photos", [(52.52, 13.40)], first=500)  # one new photo upstream: the next tick finds it
    latest = _chain_after(dagster_home, _tick(port, root), root)
    assert len(_versions(home, "dataset")) == 2 and len(_versions(home, "model")) == 2, "no new dataset and model"
    assert latest["finetuned_model"].asset_materialization.metadata["new_version"].value is True

    latest = _chain_after(dagster_home, _tick(port, root), root)  # nothing changed: nothing new published
    assert len(_versions(home, "dataset")) == 2 and len(_versions(home, "model")) == 2
    assert latest["dataset_shards"].asset_materialization.metadata["new_version"].value is False
    assert latest["finetuned_model"].asset_materialization.metadata["new_version"].value is False
