"""The UI as a user meets it: `dagster-webserver` and `dagster-daemon` on 127.0.0.1 with a fresh
DAGSTER_HOME, a backfill over the region partitions and a run launched through the GraphQL API (the
dagster-graphql client) and dequeued by the daemon, results read back from the instance, and the
asset graph page rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from geosolver_data.spec import load_spec
from tests.conftest import TINY_SPEC
from tests.pipelines.browser import HEADLESS, Browser
from tests.pipelines.servers import dagster_servers, graphql, stop_sensor, wait_run

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA_ASSETS = ["deduplicated_images", "geocells", "balanced_dataset", "dataset_shards"]
# The client passes variables the way gql has deprecated; not ours to fix.
pytestmark = [pytest.mark.long, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    with dagster_servers(tmp_path_factory.mktemp("ui"), TINY_SPEC) as running:
        # These tests drive runs themselves; the automation sensor (tested in test_refresh_daemon)
        # would otherwise start training the model on the tiny spec after the backfill.
        stop_sensor(running[0], "geosolver_automation")
        yield running


def _backfill_every_region(port: int, regions: list[str], root: Path, timeout_s: float = 400) -> str:
    """What "Materialize all" over the region partitions does in the UI: an asset backfill, which the
    daemon turns into one run per region, queued under the instance's concurrency limit."""
    launched = graphql(port, """
        mutation($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
          }
        }""", params={"assetSelection": [{"path": ["raw_images"]}], "partitionNames": regions})
    backfill_id = launched["launchPartitionBackfill"]["backfillId"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = graphql(port, """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            ... on PartitionBackfill { status } } }""", id=backfill_id)["partitionBackfillOrError"]["status"]
        if status in ("COMPLETED", "COMPLETED_SUCCESS"):
            return backfill_id
        assert status in ("REQUESTED",), f"backfill {status}: {(root / 'daemon.log').read_text()[-3000:]}"
        time.sleep(2)
    pytest.fail(f"the backfill did not finish in {timeout_s} s")


def test_runs_launched_through_graphql_materialise_the_data_assets(ui, monkeypatch: pytest.MonkeyPatch) -> None:
    port, dagster_home, root = ui
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))  # dagster.yaml reads its storage folder from it
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    regions = load_spec(TINY_SPEC).region_names
    backfill = _backfill_every_region(port, regions, root)
    build = client.submit_job_execution("build", asset_selection=DATA_ASSETS)
    wait_run(client, build, root)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_images")) == set(regions)
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill}))
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(regions)  # one run per region
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for name in DATA_ASSETS:
            assert instance.get_latest_materialization_event(dg.AssetKey(name)) is not None, name
        checks = [e.dagster_event.event_specific_data for e in instance.all_logs(
            build, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
        assert len(checks) == 6 and all(c.passed for c in checks)

    reply = requests.post(f"http://127.0.0.1:{port}/graphql", timeout=30, json={
        "query": "{ assetNodes { assetKey { path } hasMaterializePermission } }"}).json()
    keys = {node["assetKey"]["path"][0] for node in reply["data"]["assetNodes"]}
    assert set(DATA_ASSETS) | {"raw_images", "finetuned_model", "embedding_index"} <= keys


def test_two_queued_runs_of_one_region_run_one_after_the_other(ui, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs from the UI, a schedule or a backfill go through the run queue: the instance's tag
    concurrency limit on `dagster/partition` lets one run per region in at a time."""
    port, dagster_home, root = ui
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    region = load_spec(TINY_SPEC).region_names[0]
    first, second = (client.submit_job_execution("ingest", tags={"dagster/partition": region}) for _ in range(2))
    for run_id in (first, second):
        wait_run(client, run_id, root)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        a, b = sorted((instance.get_run_record_by_id(r) for r in (first, second)), key=lambda r: r.start_time)
        assert a.end_time <= b.start_time, "two runs of one region ran at the same time"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_the_asset_graph_page_shows_the_assets(ui) -> None:
    port, _, root = ui
    # The UI greets a loopback visitor with a newsletter dialog until the instance records it as seen.
    requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30)
    url = f"http://127.0.0.1:{port}/locations/pipelines.definitions/asset-groups/dataset"
    flags = [*HEADLESS, "--window-size=1600,1000", "--virtual-time-budget=25000",
             f"--user-data-dir={root / 'chromium'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    for name in ("raw_images", "deduplicated_images", "dataset_shards"):
        assert name in dom, f"{name} is not on the asset graph page"
    shot = root / "asset-graph.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=180, check=True)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_the_dataset_page_shows_row_count_columns_and_the_coverage_map(ui) -> None:
    """After the build run of the first test: the metadata a person reads on dataset_shards's page."""
    port, _, root = ui
    home = root / "geosolver" / "datasets" / "tiny"
    manifest = json.loads((home / (home / "LATEST").read_text().strip() / "manifest.json").read_text())
    requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30)
    browser = Browser(CHROMIUM, root / "chromium-cdp")
    try:
        browser.open(f"http://127.0.0.1:{port}/assets/dataset_shards")
        text = browser.wait_for("document.body.innerText.includes('size_per_image') && document.body.innerText")
        assert re.search(rf"Row count\s+{manifest['rows']}\b", text), "no row count on the page"
        columns = browser.js("[...document.querySelectorAll('tr')].map(r => r.innerText.split('\\t')[0].trim())")
        assert set(manifest["columns"]) <= set(columns), "the column schema is not shown"
        assert re.search(r"size_per_image\s+Dec.*?\s+\d+\.\d KB", text, re.S), "sizes are not in human units"
        row = "[...document.querySelectorAll('tr')].find(r => r.innerText.trim().startsWith('coverage_map'))"
        for attempt in range(3):  # a click aimed while the page still lays out (a loaded CI box) can miss
            browser.click_text("[Show Markdown]", within=row)
            try:
                browser.wait_for("!!document.querySelector('[role=\"dialog\"]')", timeout_s=15)
                break
            except AssertionError:
                if attempt == 2:
                    raise
        width = browser.wait_for("(() => { const i = document.querySelector('img[src^=\"data:image/png\"]');"
                                 " return i && i.complete && i.naturalWidth; })()")
        assert width >= 400, "the coverage map is not drawn"
        shot = browser.screenshot(root / "dataset-shards-coverage.png")
        assert shot.stat().st_size > 50_000
    finally:
        browser.close()
