"""OSV-5M read straight from a Hub-shaped server on loopback: the commit pinned, the CSV through
huggingface_hub, each archive's central directory once (zip64, long comments, directories past the
tail), then only the region's members by range requests, through the CDN redirect, under faults."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from geosolver_data.ingest.fetch import Fetcher, FetchPolicy
from geosolver_data.ingest.sources.base import SourceError
from geosolver_data.ingest.worker import CONTENT_RETRIES_IN_RUN
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.test_remote_sources import NORTH, SOUTH, remote_spec
from tests.fakes.hub import CDN_FAULTS, FakeHub, point_at
from tests.fakes.osv5m import Osv5mRepo, osv5m_repo
from tests.fakes.server import LoopbackServer

ROOT = Path(__file__).parents[2]
REPO = "osv5m/osv5m"


@pytest.fixture
def hub(hub_env, monkeypatch: pytest.MonkeyPatch):
    """(FakeHub, its repo, its URL): the Hub on 127.0.0.1, its file host (the CDN) on 127.0.0.2."""
    fake = FakeHub()
    repo = osv5m_repo([(tuple(NORTH), 24), (tuple(SOUTH), 12)], archives=4)
    fake.push(REPO, repo.files, kind="dataset")
    with LoopbackServer(fake.app(), hosts=("127.0.0.2",)) as server:
        fake.cdn = server.urls[1]
        point_at(hub_env, monkeypatch, server.url)
        yield fake, repo, server.url


def _spec(**source: object):
    return remote_spec({"type": "osv5m", "hub": REPO, **source})


def _outcomes(layout: DatasetLayout, region: str) -> tuple[set[str], dict[str, str]]:
    stored = set(pq.read_table(layout.raw_images(region, "osv5m")).column("image_id").to_pylist())
    rejects = {r["image_id"]: r["reason"] for r in pq.read_table(layout.raw_rejects(region, "osv5m")).to_pylist()}
    return stored, rejects


def _expected(repo: Osv5mRepo, box: list[float]) -> tuple[set[str], dict[str, str]]:
    ids = repo.ids_in(tuple(box))
    reasons = {**{k: "image_missing" for k in repo.missing & ids}, **{k: "corrupt_member" for k in repo.corrupt & ids}}
    return {f"osv5m:{k}" for k in ids - set(reasons)}, {f"osv5m:{k}": r for k, r in reasons.items()}


def test_a_region_is_read_by_range_requests_under_faults_and_accounted_for_exactly(hub, home: Path) -> None:
    fake, repo, _ = hub
    assert repo.corrupt <= repo.ids_in(tuple(NORTH)) and repo.missing <= repo.ids_in(tuple(SOUTH))
    fake.faults, fake.fault_every = CDN_FAULTS, 3  # every third answer of the file host: 429, 500, reset, cut short
    spec = _spec(max_retries=4)
    layout = DatasetLayout(home, spec.name)
    logs: list[str] = []
    ingest_region(spec, layout, "north", log=logs.append)
    stored, rejects = _outcomes(layout, "north")
    assert (stored, rejects) == _expected(repo, NORTH)
    assert any("is commit" in line for line in logs)
    assert fake.requests[f"GET /datasets/{REPO}/resolve/main/train.csv"] == 0  # the CSV at the pinned commit
    assert all("/resolve/main/" not in r for r in fake.requests)

    # The next region: the directories come from the cache, and only its members are downloaded.
    fake.faults, fake.cdn_gets, fake.cdn_bytes = (), 0, 0
    fake.requests.clear()
    ingest_region(spec, layout, "south", log=logs.append)
    stored, rejects = _outcomes(layout, "south")
    assert (stored, rejects) == _expected(repo, SOUTH)
    members = [k for k in repo.ids_in(tuple(SOUTH)) if k in repo.member_bytes]
    assert fake.cdn_gets == len(members)  # one range request per photo, no directory read again
    # The Hub's rate-limited resolve endpoint: once per archive (its signed redirect is reused), not per photo.
    assert sum(n for r, n in fake.requests.items() if "/resolve/" in r and r.endswith(".zip")) <= 4
    share = sum(repo.member_bytes[k] for k in members)
    assert fake.cdn_bytes <= 1.2 * share, (fake.cdn_bytes, share)
    assert fake.cdn_bytes < sum(len(v) for k, v in repo.files.items() if k.endswith(".zip")) / 3

    # A refresh downloads only the corrupt member again (a content reject from a remote host is tried by
    # the next `content_retries` runs, three requests each): every other id is finished, every directory cached.
    fake.cdn_gets = 0
    ingest_region(spec, layout, "north", log=logs.append)
    assert fake.cdn_gets == 1 + CONTENT_RETRIES_IN_RUN and _outcomes(layout, "north") == _expected(repo, NORTH)


def test_the_token_goes_to_the_hub_only_and_is_written_nowhere(hub, home: Path, monkeypatch: pytest.MonkeyPatch,
                                                               hub_env) -> None:
    fake, repo, _ = hub
    fake.private.add(REPO)
    spec = _spec()
    layout = DatasetLayout(home, spec.name)
    with pytest.raises(SourceError, match=f"{REPO} at main.*HF_TOKEN"):
        ingest_region(spec, layout, "north", log=lambda _: None)
    monkeypatch.setenv("HF_TOKEN", fake.token)
    monkeypatch.setattr(hub_env, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    logs: list[str] = []
    ingest_region(spec, layout, "north", log=logs.append)
    assert _outcomes(layout, "north") == _expected(repo, NORTH)
    assert f"Bearer {fake.token}" in fake.seen_authorization and fake.cdn_authorization == []
    assert not any(fake.token in line for line in logs)
    for path in home.rglob("*"):
        assert not path.is_file() or fake.token.encode() not in path.read_bytes(), path


def test_an_unknown_repo_or_revision_is_one_line(hub, home: Path) -> None:
    for source, words in (({"hub": "osv5m/nope"}, "osv5m/nope at main"), ({"revision": "v9"}, f"{REPO} at v9"),
                          ({"split": "test"}, "test.csv")):
        spec = _spec(**source)
        with pytest.raises(SourceError) as caught:
            ingest_region(spec, DatasetLayout(home, spec.name), "north", log=lambda _: None)
        assert words in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


@pytest.mark.long
def test_dagster_asset_materialize_ingests_a_region_from_the_hub(hub, tmp_path: Path) -> None:
    fake, repo, url = hub
    fake.faults, fake.fault_every = CDN_FAULTS, 4
    spec = _spec(max_retries=4).model_dump(mode="json", exclude_defaults=True)
    spec_file = tmp_path / "hub.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home)
    env = {**os.environ, "GEOSOLVER_SPEC": str(spec_file), "GEOSOLVER_HOME": str(tmp_path / "home"),
           "DAGSTER_HOME": str(dagster_home), "HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
                           "pipelines.definitions", "--select", "raw_images", "--partition", "north"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "RUN_SUCCESS" in done.stderr, done.stderr[-3000:]
    layout = DatasetLayout(tmp_path / "home", spec["name"])
    assert _outcomes(layout, "north") == _expected(repo, NORTH)


def test_a_redirect_is_reused_until_its_signature_is_refused(hub) -> None:
    fake, repo, url = hub
    archive = "images/train/00.zip"
    body = repo.files[archive]
    resolve = f"{url}/datasets/{REPO}/resolve/main/{archive}"

    async def read() -> list[bytes]:
        async with Fetcher(FetchPolicy(allow_private_addresses=True, requests_per_second=0)) as fetcher:
            out = [await fetcher.range(resolve, 0, 100), await fetcher.range(resolve, 100, 300)]
            fake.signature = "beef"  # the signed URL handed out has expired
            out.append(await fetcher.range(resolve, 300, 400))
            return out

    assert asyncio.run(read()) == [body[:100], body[100:300], body[300:400]]
    assert fake.requests[f"GET /datasets/{REPO}/resolve/main/{archive}"] == 2  # the first read, and after expiry
    assert fake.cdn_gets == 3


def test_a_member_over_the_size_cap_is_refused_without_a_download(hub, home: Path) -> None:
    fake, repo, _ = hub
    spec = remote_spec({"type": "osv5m", "hub": REPO}, image={"max_file_bytes": 1000})  # every photo is larger
    layout = DatasetLayout(home, spec.name)
    ingest_region(spec, layout, "north", log=lambda _: None)
    stored, rejects = _outcomes(layout, "north")
    members = {f"osv5m:{k}" for k in repo.ids_in(tuple(NORTH)) if k in repo.member_bytes}
    assert stored == set() and {k for k, r in rejects.items() if r == "too_large"} == members
    served = {(sha, start) for _, sha, start, _ in fake.cdn_log}  # only central directories were read
    assert not served & {(hashlib.sha256(repo.files[p]).hexdigest(), at) for p, at in repo.member_at.values()}
