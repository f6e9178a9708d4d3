"""GEOSOLVER_HOME on S3, end to end against a real S3-compatible server on loopback (moto's server
mode): each step runs with its own empty working copy, as pods in a cluster would, and the dataset
version lands in the bucket whole."""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from geosolver_data.cli import main
from geosolver_data.spec import load_spec
from pipelines.dataset import default
from pipelines.resources import GeosolverResource
from tests.conftest import TINY_SPEC

DATA = [default.assets.raw_images, default.assets.deduplicated_images, default.assets.geocells,
        default.assets.balanced_dataset, default.assets.dataset_shards, *default.checks]


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    name = f"geosolver-test-{uuid.uuid4().hex[:8]}"  # moto's backend outlives one server in a process
    s3fs.S3FileSystem().mkdir(name)
    try:
        yield f"s3://{name}/home"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def _step(home: str, cache: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> dg.ExecuteInProcessResult:
    monkeypatch.setenv("GEOSOLVER_CACHE", str(cache))  # a fresh pod: nothing local yet
    resource = GeosolverResource(home=home, spec_path=str(TINY_SPEC))
    result = dg.materialize(DATA, resources={"geosolver": resource}, raise_on_error=False, **kwargs)
    assert result.success
    return result


def test_each_step_on_its_own_machine_publishes_a_whole_version_to_s3(
        bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    for i, region in enumerate(load_spec(TINY_SPEC).region_names):
        _step(bucket, tmp_path / f"ingest-{i}", monkeypatch, selection="raw_images", partition_key=region)
    _step(bucket, tmp_path / "build", monkeypatch,
          selection=["deduplicated_images", "geocells", "balanced_dataset", "dataset_shards"])
    # The build's pod fetched the region tables, and nothing that only ingest reads.
    fetched = [p.relative_to(tmp_path / "build").as_posix() for p in (tmp_path / "build").rglob("*") if p.is_file()]
    assert [p for p in fetched if "/raw_images/" in p]
    assert not [p for p in fetched if any(k in p for k in ("/ledger/", "/listed/", "/synthetic/"))], fetched

    fs = s3fs.S3FileSystem()
    root = bucket.removeprefix("s3://") + "/datasets/tiny"
    version = fs.cat(f"{root}/LATEST").decode().strip()
    manifest = json.loads(fs.cat(f"{root}/{version}/manifest.json"))
    assert manifest["version"] == version and manifest["rows"] > 0
    for shard in manifest["shards"]:
        data = fs.cat(f"{root}/{version}/{shard['path']}")
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    assert fs.exists(f"{root}/{version}/README.md")

    # A refresh of one region on a fresh pod with nothing new upstream: neither the region's image file
    # nor its demo photos are uploaded again (the pod pulled them, it did not regenerate them), and no
    # part holding image bytes is left in the bucket's ledger.
    region = load_spec(TINY_SPEC).region_names[0]
    raw = f"{bucket.removeprefix('s3://')}/work/tiny/raw_images/{region}"
    photos = f"{bucket.removeprefix('s3://')}/synthetic/tiny/synthetic/{region}"

    def uploads() -> dict[str, tuple]:
        fs.invalidate_cache()
        return {p: (i["ETag"], i["LastModified"]) for folder in (raw, photos)
                for p, i in fs.find(folder, detail=True).items()}

    before = uploads()
    assert any(p.startswith(photos) for p in before)
    _step(bucket, tmp_path / "refresh", monkeypatch, selection="raw_images", partition_key=region)
    assert uploads() == before
    ledger = fs.find(f"{bucket.removeprefix('s3://')}/work/tiny/ledger/{region}")
    assert not [p for p in ledger if "/rows-" in p] and len([p for p in ledger if "/slim-" in p]) == 1
    # That pod fetched its own region's files and nothing else: no other region, no published version.
    pulled = [p.relative_to(tmp_path / "refresh").as_posix() for p in (tmp_path / "refresh").rglob("*")
              if p.is_file() and not p.name.startswith(".")]
    others = set(load_spec(TINY_SPEC).region_names) - {region}
    assert pulled and all(f"/{region}" in p for p in pulled if "/work/" in p or "/synthetic/" in p), pulled
    assert not [p for p in pulled if any(f"/{o}/" in p or p.endswith(f"/{o}") for o in others)], pulled
    assert not [p for p in pulled if "/datasets/" in p], pulled

    # A later step on yet another machine sees the published version without rebuilding anything.
    again = _step(bucket, tmp_path / "later", monkeypatch, selection="dataset_shards")
    assert again.asset_materializations_for_node("dataset_shards")[0].metadata["version"].value == version

    # So does the command line, from an empty working copy.
    monkeypatch.setenv("GEOSOLVER_CACHE", str(tmp_path / "laptop"))
    monkeypatch.setenv("GEOSOLVER_HOME", bucket)
    main(["--spec", str(TINY_SPEC), "show"])
    assert f"dataset tiny version {version}" in capsys.readouterr().out


def test_ledger_parts_the_ledger_replaced_are_removed_from_the_bucket_and_nothing_else(
        bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geosolver_data.store.mirror import Mirror

    monkeypatch.setenv("GEOSOLVER_CACHE", str(tmp_path / "pod"))
    mirror = Mirror(bucket)
    ledger = mirror.local / "work" / "tiny" / "ledger" / "europe" / "synthetic-abc"
    ledger.mkdir(parents=True)
    for name in ("rows-1.parquet", "slim-1.parquet", "rejects-1.parquet", "state.json"):
        (ledger / name).write_bytes(b"x")
    other = mirror.local / "work" / "tiny" / "ledger" / "asia" / "synthetic-abc"
    other.mkdir(parents=True)
    (other / "slim-1.parquet").write_bytes(b"x")
    (mirror.local / "work" / "tiny" / "raw_images").mkdir(parents=True)
    (mirror.local / "work" / "tiny" / "raw_images" / "europe.parquet").write_bytes(b"x")
    mirror.push()
    (ledger / "rows-1.parquet").unlink()  # the ledger replaced these two by a new slim part
    (ledger / "slim-1.parquet").unlink()
    (ledger / "slim-2.parquet").write_bytes(b"y")
    (mirror.local / "work" / "tiny" / "raw_images" / "europe.parquet").unlink()  # not a ledger part
    for path in other.iterdir():  # a whole ledger folder trimmed by hand
        path.unlink()
    other.rmdir()
    mirror.push()
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    root = bucket.removeprefix("s3://")
    left = sorted(p.removeprefix(root + "/") for p in fs.find(root))
    assert left == ["work/tiny/ledger/asia/synthetic-abc/slim-1.parquet",
                    "work/tiny/ledger/europe/synthetic-abc/rejects-1.parquet",
                    "work/tiny/ledger/europe/synthetic-abc/slim-2.parquet",
                    "work/tiny/ledger/europe/synthetic-abc/state.json",
                    "work/tiny/raw_images/europe.parquet"]
