"""`dagster-webserver` and `dagster-daemon` on 127.0.0.1 with a fresh DAGSTER_HOME, as a person runs
them, and the small GraphQL helpers the tests that drive them share."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from dagster_graphql import DagsterGraphQLClient

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dagster_servers(root: Path, spec: Path, **env: str) -> Iterator[tuple[int, Path, Path]]:
    """(port, DAGSTER_HOME, root): the webserver and the daemon on the spec, until the block ends."""
    dagster_home, home = root / "dagster", root / "geosolver"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "GEOSOLVER_HOME": str(home),
           "GEOSOLVER_SPEC": str(spec), **env}
    # `make init`: the instance's storage is created once, before two processes could race to create it.
    subprocess.run([BIN / "dagster", "instance", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    logs = [(root / "webserver.log").open("w"), (root / "daemon.log").open("w")]
    procs = [
        subprocess.Popen([BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-m", "pipelines.definitions"],
                         env=env, cwd=ROOT, stdout=logs[0], stderr=subprocess.STDOUT),
        subprocess.Popen([BIN / "dagster-daemon", "run", "-m", "pipelines.definitions"], env=env, cwd=ROOT,
                         stdout=logs[1], stderr=subprocess.STDOUT),
    ]
    try:
        wait_for_webserver(port, procs, root / "webserver.log")
        yield port, dagster_home, root
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()


def wait_for_webserver(port: int, procs: list[subprocess.Popen], log: Path, timeout_s: float = 180) -> None:
    """Until the webserver on `port` answers; fails with the log if a process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
        time.sleep(1)
    pytest.fail(f"the webserver did not answer within {timeout_s} s")


def wait_run(client: DagsterGraphQLClient, run_id: str, root: Path, timeout_s: float = 400) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id)
        if status == dg.DagsterRunStatus.SUCCESS:
            return
        assert status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED), (
            f"run {run_id} ended {status}; daemon log: {(root / 'daemon.log').read_text()[-3000:]}")
        time.sleep(2)
    pytest.fail(f"run {run_id} did not finish in {timeout_s} s (queued runs need the daemon)")


def graphql(port: int, query: str, **variables: object) -> dict:
    reply = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables},
                          timeout=60).json()
    assert "errors" not in reply, reply
    return reply["data"]


REPOSITORY = {"repositoryLocationName": "pipelines.definitions", "repositoryName": "__repository__"}


def sensor_states(port: int, location: str = REPOSITORY["repositoryLocationName"]) -> dict[str, str]:
    """{sensor name: RUNNING | STOPPED} as the UI's Automation page shows them."""
    reply = graphql(port, """query($r: RepositorySelector!) { sensorsOrError(repositorySelector: $r) {
        ... on Sensors { results { name sensorState { status } } } } }""",
                    r={**REPOSITORY, "repositoryLocationName": location})
    return {s["name"]: s["sensorState"]["status"] for s in reply["sensorsOrError"]["results"]}


def stop_sensor(port: int, name: str) -> None:
    """What the toggle on the Automation page does."""
    state = graphql(port, """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
        ... on Sensor { sensorState { id } } } }""", s={**REPOSITORY, "sensorName": name})
    reply = graphql(port, """mutation($id: String) { stopSensor(id: $id) { __typename
        ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }""",
                    id=state["sensorOrError"]["sensorState"]["id"])
    assert reply["stopSensor"]["instigationState"]["status"] == "STOPPED", reply


def schedule_tick(port: int, client: DagsterGraphQLClient, schedule: str) -> list[str]:
    """A tick of `schedule` now, as the UI's "Test schedule" then "Launch all runs" does: the
    schedule is evaluated by the code server and each run it requests is launched. Returns run ids."""
    reply = graphql(port, """mutation($s: ScheduleSelector!, $t: Float) {
        scheduleDryRun(selectorData: $s, timestamp: $t) { __typename
          ... on DryRunInstigationTick { evaluationResult { error { message }
                runRequests { jobName runConfigYaml tags { key value } } } }
          ... on PythonError { message } } }""", s={**REPOSITORY, "scheduleName": schedule}, t=time.time())
    result = reply["scheduleDryRun"]["evaluationResult"]
    assert result and not result["error"], reply
    job = graphql(port, """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
        ... on Schedule { pipelineName } } }""", s={**REPOSITORY, "scheduleName": schedule})
    job = job["scheduleOrError"]["pipelineName"]  # a request names its job only when it differs
    return [client.submit_job_execution(request["jobName"] or job, run_config=yaml.safe_load(request["runConfigYaml"]),
                                        tags={t["key"]: t["value"] for t in request["tags"]})
            for request in result["runRequests"]]
