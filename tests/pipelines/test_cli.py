"""What a user's CI does: `dagster asset materialize` and `geosolver` as subprocesses."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.conftest import TINY_SPEC
from tests.fakes.imagery import FakeImage, Imagery
from tests.fakes.server import LoopbackServer

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.long


def _env(tmp_path: Path) -> dict[str, str]:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(dagster_home), "GEOSOLVER_HOME": str(tmp_path / "home"),
            "GEOSOLVER_SPEC": str(TINY_SPEC)}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _materialize(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return _run([str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines.definitions", *args], env)


@pytest.fixture(scope="module")
def cli_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = _env(tmp_path_factory.mktemp("cli"))
    for key in _run([str(BIN / "geosolver"), "partitions"], env).stdout.split():
        done = _materialize(env, "--select", "raw_images", "--partition", key)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "RUN_SUCCESS" in done.stderr
    # The dataset only: these tests read the published dataset; `make run` (in .ci/run) and the daemon
    # test take the whole graph, model included, through the CLI and a schedule.
    done = _materialize(env, "--select", "deduplicated_images,geocells,balanced_dataset,dataset_shards")
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'Asset check \'manifest_matches_files\' on \'dataset_shards\' passed' in done.stderr
    return env


def test_dagster_cli_builds_a_dataset(cli_build: dict[str, str]) -> None:
    show = _run([str(BIN / "geosolver"), "show", "--json"], cli_build)
    assert show.returncode == 0, show.stderr
    manifest = json.loads(show.stdout)
    assert manifest["dataset"] == "tiny" and manifest["rows"] > 0
    assert (Path(cli_build["DAGSTER_HOME"]) / "history" / "runs.db").exists()  # SQLite under DAGSTER_HOME


def test_geosolver_commands(cli_build: dict[str, str]) -> None:
    geosolver = str(BIN / "geosolver")
    validate = _run([geosolver, "validate"], cli_build)
    assert validate.returncode == 0 and validate.stdout.count("ok  ") == 6, validate.stdout
    sql = _run([geosolver, "sql", "SELECT split, count(*) AS n FROM tiny GROUP BY 1 ORDER BY 1"], cli_build)
    assert sql.returncode == 0 and "train" in sql.stdout, sql.stderr
    summary = _run([geosolver, "show"], cli_build)
    assert "gini" in summary.stdout and "rejects" in summary.stdout and "{" not in summary.stdout  # no dict reprs
    photos = _run([geosolver, "sql", "SELECT image_id, image FROM tiny LIMIT 2"], cli_build)
    assert photos.returncode == 0 and photos.stdout.count(" bytes>") == 2 and "\\x" not in photos.stdout
    rows = json.loads(_run([geosolver, "sql", "SELECT image FROM tiny LIMIT 1", "--json"], cli_build).stdout)
    assert rows[0]["image"].endswith(" bytes>")


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    env = _env(tmp_path)
    bad = _materialize(env, "--select", "raw_images", "--partition", "atlantis")
    assert bad.returncode != 0 and "atlantis" in bad.stderr + bad.stdout
    missing = _run([str(BIN / "geosolver"), "show"], env)
    assert missing.returncode == 1 and "no published version" in missing.stderr
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: x\nregions: []\n")
    broken = _run([str(BIN / "geosolver"), "--spec", str(spec), "regions"], env)
    assert broken.returncode == 2 and "regions: expected a non-empty list" in broken.stderr


def test_two_runs_of_one_region_at_once_both_succeed_and_fetch_each_image_once(tmp_path: Path) -> None:
    """`dagster asset materialize` runs in-process, past the run queue: the ledger's lock makes the
    second wait for the first, then find its work done. The instance is set up once (`make init`)."""
    imagery = Imagery()
    app = web.Application()
    imagery.routes(app)
    imagery.add(*(FakeImage(f"i{i}", 50.01 + i * 0.001, 10.1) for i in range(120)))
    imagery.sleep_s = 0.02
    with LoopbackServer(app) as server:
        listing = tmp_path / "urls.csv"
        listing.write_text("id,url,lat,lon\n" + "".join(
            f"{im.id},{imagery.listed_url(server.url, im)},{im.lat},{im.lon}\n" for im in imagery.images.values()))
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "twice", "regions": [{"name": "north", "bbox": [10.0, 50.0, 10.2, 50.2]}],
            "sources": [{"type": "urls", "path": str(listing), "requests_per_second": 15,
                         "allow_private_addresses": True}], "workers": 1}))
        env = {**_env(tmp_path), "GEOSOLVER_SPEC": str(spec)}
        init = _run([str(BIN / "dagster"), "instance", "migrate"], env)
        assert init.returncode == 0, init.stderr[-2000:]
        command = [str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines.definitions", "--select",
                   "raw_images", "--partition", "north"]
        runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for _ in range(2)]
        outputs = [r.communicate(timeout=300)[0] for r in runs]
        assert [r.returncode for r in runs] == [0, 0], [o[-2000:] for o in outputs]
        assert sum("waiting for it to end" in o for o in outputs) == 1  # one waited for the other
        assert sorted(imagery.hits.values()) == [1] * 120  # every image fetched once
        again = _materialize(env, "--select", "raw_images", "--partition", "north")  # the instance still works
        assert again.returncode == 0 and "RUN_SUCCESS" in again.stderr
