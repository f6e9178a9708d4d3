"""`dg` as a Dagster user runs it from the repository root, with the project's virtual environment
active: `dg check defs`, `dg list defs`, `dg launch` of one region partition, and `dg dev` serving the
UI with its daemon (the automation sensor running)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import TINY_SPEC
from tests.pipelines.servers import free_port, sensor_states, wait_for_webserver

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DG = BIN / "dg"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("dg")
    dagster_home = root / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "GEOSOLVER_HOME": str(root / "geosolver"),
           "GEOSOLVER_SPEC": str(TINY_SPEC), "VIRTUAL_ENV": sys.prefix,  # `source .venv/bin/activate`
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([BIN / "dagster", "instance", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    return env


def _dg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([DG, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"dg {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


def test_dg_check_and_list_see_the_code_location(env: dict[str, str]) -> None:
    assert "All definitions loaded successfully" in _dg(env, "check", "defs").stdout
    listed = json.loads(_dg(env, "list", "defs", "--json").stdout)
    assert {a["asset_key"] for a in listed["assets"]} >= {"raw_images", "dataset_shards", "finetuned_model",
                                                          "embedding_index"}
    assert {j["name"] for j in listed["jobs"]} == {"ingest", "build"}
    assert [s["name"] for s in listed["schedules"]] == ["dataset_refresh"]
    assert [s["name"] for s in listed["sensors"]] == ["geosolver_automation"]
    assert "raw_images:every_listed_image_accounted_for" in {c["key"] for c in listed["asset_checks"]}


def test_dg_launch_materialises_one_region(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _dg(env, "launch", "--assets", "raw_images", "--partition", "europe")
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # dagster.yaml names its storage by it
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_images")) == {"europe"}
    stored = list((Path(env["GEOSOLVER_HOME"]) / "work" / "tiny" / "raw_images" / "europe").glob("*.parquet"))
    assert stored, "the launched run wrote nothing under GEOSOLVER_HOME"


def test_dg_dev_serves_the_ui_with_the_automation_sensor_running(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "dg-dev.log").open("w")
    dev = subprocess.Popen([DG, "dev", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=ROOT,
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_webserver(port, [dev], tmp_path / "dg-dev.log")
        assert sensor_states(port, location="geosolver") == {"geosolver_automation": "RUNNING"}
        deadline = time.monotonic() + 60  # `dg dev` also runs the daemon: the sensor ticks
        while "geosolver_automation" not in (tmp_path / "dg-dev.log").read_text() and time.monotonic() < deadline:
            time.sleep(1)
        assert "geosolver_automation" in (tmp_path / "dg-dev.log").read_text(), "no daemon tick of the sensor"
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C, as a person stops it
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
