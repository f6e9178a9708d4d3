"""Dagster instance storage on a real PostgreSQL server that the test starts (Debian's postgresql
package), configured by deploy/dagster.yaml's storage and run-coordinator sections."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from geosolver_data.spec import load_spec
from pipelines.dataset import default
from pipelines.resources import GeosolverResource
from tests.conftest import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent  # Debian links pg_ctl alone into /usr/local/bin
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


PG_BIN = _pg_bin()
pytestmark = pytest.mark.skipif(PG_BIN is None,
                                reason="PostgreSQL is not installed (Debian: apt-get install postgresql)")


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; CI containers often are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    assert PG_BIN is not None
    # Not under pytest's tmp folder: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="geosolver-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    run = lambda *cmd: subprocess.run(_as_server_user([str(c) for c in cmd]), check=True,  # noqa: E731
                                      capture_output=True, text=True)
    run(PG_BIN / "initdb", "-D", data, "-U", "geosolver", "--auth=trust", "-E", "UTF8")
    run(PG_BIN / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "start",
        "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1")
    try:
        run(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "geosolver", "dagster")
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": port, "DAGSTER_PG_USER": "geosolver",
               "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "dagster"}
    finally:
        run(PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_runs_and_events_are_stored_in_postgres(postgres: dict[str, str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    deployed = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    # Step logs to S3 need dagster-aws and a bucket; everything else is the deployed file as it is.
    config = {k: v for k, v in deployed.items() if k != "compute_logs"}
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))

    region = load_spec(TINY_SPEC).region_names[0]
    resource = GeosolverResource(home=str(tmp_path / "home"), spec_path=str(TINY_SPEC))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([default.assets.raw_images], instance=instance, partition_key=region,
                                resources={"geosolver": resource})
        assert result.success
        assert instance.get_materialized_partitions(dg.AssetKey("raw_images")) == {region}

    with psycopg2.connect(host="127.0.0.1", port=postgres["DAGSTER_PG_PORT"], user="geosolver",
                          dbname="dagster") as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                    (result.run_id, "ASSET_MATERIALIZATION"))
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone()[0] == "SUCCESS"
