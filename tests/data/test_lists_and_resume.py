"""URL lists and OSV-5M imports, and kill -9 in the middle of an ingest, then a rerun."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiohttp import web

from geosolver_data.spec import parse_spec
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.test_remote_sources import NORTH, SOUTH, TOKEN, outcomes, remote_spec, world
from tests.fakes.imagery import FakeImage, Imagery, jpeg_bytes
from tests.fakes.mapillary import FakeMapillary
from tests.fakes.server import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]


def test_url_list_every_row_is_decided_by_one_region(home: Path, tmp_path: Path) -> None:
    imagery = Imagery()
    app = web.Application()
    imagery.routes(app)
    images = [FakeImage(f"n{i}", 50.05 + i * 0.01, 10.1) for i in range(8)]
    images += [FakeImage(f"s{i}", 49.85 + i * 0.01, 10.1) for i in range(4)]
    images.append(FakeImage("broken", 50.1, 10.05, fault="corrupt"))
    imagery.add(*images)
    with LoopbackServer(app) as server:
        rows = [{"id": im.id, "url": imagery.listed_url(server.url, im), "latitude": im.lat, "longitude": im.lon,
                 "license": "CC0", "creator": "bob"} for im in images]
        rows += [{"id": "badlat", "url": f"{server.url}/x.jpg", "latitude": "abc", "longitude": 10.1},
                 {"id": "null_island", "url": f"{server.url}/x.jpg", "latitude": 0, "longitude": 0},
                 {"id": "elsewhere", "url": f"{server.url}/x.jpg", "latitude": 10, "longitude": 10},
                 {"id": "local_file", "url": "file:///etc/passwd", "latitude": 50.1, "longitude": 10.1},
                 {"id": "no_url", "url": "", "latitude": 50.1, "longitude": 10.1}]
        listing = tmp_path / "urls.csv"
        with listing.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "url", "latitude", "longitude", "license", "creator"])
            writer.writeheader()
            writer.writerows(rows)
        spec = remote_spec({"type": "urls", "name": "mine", "path": str(listing)})
        layout = DatasetLayout(home, spec.name)
        for region in spec.region_names:
            ingest_region(spec, layout, region, log=lambda _: None)
    raw, rejects = outcomes(layout, spec)
    assert set(raw) | set(rejects) == {f"mine:{r['id']}" for r in rows}
    assert {raw[f"mine:{im.id}"]["region"] for im in images if im.id.startswith("s")} == {"south"}
    reasons = {k.split(":")[1]: v["reason"] for k, v in rejects.items()}
    assert reasons == {"broken": "undecodable", "badlat": "invalid_coordinates", "null_island": "invalid_coordinates",
                       "elsewhere": "outside_regions", "local_file": "unsupported_url", "no_url": "no_image_url"}
    assert raw["mine:n0"]["license"] == "CC0" and raw["mine:n0"]["creator"] == "bob"


def test_a_url_list_loses_no_row(home: Path, tmp_path: Path) -> None:
    imagery = Imagery()
    app = web.Application()
    imagery.routes(app)
    imagery.add(FakeImage("a", 50.05, 10.1), FakeImage("b", 50.06, 10.1), FakeImage("cut", 50.07, 10.1,
                                                                                   fault="cut_header"))
    with LoopbackServer(app) as server:
        url = {i: imagery.listed_url(server.url, imagery.images[i]) for i in imagery.images}
        listing = tmp_path / "urls.csv"
        listing.write_text("\n".join([
            "url,lat,lon,license",
            f"{url['a']},50.05,10.1,CC0",  # row 1 (rows: the ones that parse)
            f"{url['a']},49.9,10.1,CC0",  # row 2: the same URL again, another place (the south region's box)
            f"{url['b']},50.06",  # line 4: a column missing
            f"{url['b']},50.06,10.1,CC0,extra",  # line 5: a column too many
            f"{url['b']},50.06,10.1,CC0",  # row 3
            f"{url['cut']},50.07,10.1,CC0",  # row 4: the host cuts the JPEG inside its header
            f"{url['a']},50.05,10.1,CC0",  # row 5: an exact repeat of row 1
        ]) + "\n")
        spec = remote_spec({"type": "urls", "name": "mine", "path": str(listing), "max_retries": 0,
                            "content_retries": 0})
        layout = DatasetLayout(home, spec.name)
        stats = {r: ingest_region(spec, layout, r, log=lambda _: None)["mine"] for r in spec.region_names}
    raw, rejects = outcomes(layout, spec)
    first = hashlib.sha256(url["a"].encode()).hexdigest()[:20]
    assert set(raw) == {f"mine:{first}", f"mine:{hashlib.sha256(url['b'].encode()).hexdigest()[:20]}"}
    reasons = {k: (v["reason"], v["detail"]) for k, v in rejects.items()}
    cut = hashlib.sha256(url["cut"].encode()).hexdigest()[:20]
    assert reasons == {
        f"mine:{first}-row-2": ("duplicate_url", "the url of row 1 again"),
        f"mine:{first}-row-5": ("duplicate_url", "the url of row 1 again"),
        "mine:malformed-line-4": ("malformed_row", "line 4: MISSING COLUMNS: Expected Number of Columns: 4 Found: 2"),
        "mine:malformed-line-5": ("malformed_row", "line 5: TOO MANY COLUMNS: Expected Number of Columns: 4 Found: 5"),
        f"mine:{cut}": ("undecodable", reasons[f"mine:{cut}"][1]),
    }
    assert rejects[f"mine:{first}-row-2"]["region"] == "south"  # decided where its point lies
    assert sum(s.accounting.listed for s in stats.values()) == 7  # every row of the list, once


def test_a_bad_byte_stays_in_its_row(home: Path, tmp_path: Path) -> None:
    """Invalid UTF-8 in the first data row: that row is one `malformed_row`; the list is read, not refused
    (a text reader decodes ahead of the header line and failed the whole region)."""
    imagery = Imagery()
    app = web.Application()
    imagery.routes(app)
    imagery.add(FakeImage("a", 50.05, 10.1), FakeImage("b", 50.06, 10.1))
    with LoopbackServer(app) as server:
        url = {i: imagery.listed_url(server.url, imagery.images[i]) for i in imagery.images}
        listing = tmp_path / "urls.csv"
        listing.write_bytes(b"\n".join([
            b"url,lat,lon,license",
            url["a"].encode() + b",50.05,10.1,CC\xff0",  # line 2: not UTF-8
            url["b"].encode() + b",50.06,10.1,CC0",
        ]) + b"\n")
        spec = remote_spec({"type": "urls", "name": "mine", "path": str(listing), "max_retries": 0})
        layout = DatasetLayout(home, spec.name)
        for region in spec.region_names:
            ingest_region(spec, layout, region, log=lambda _: None)
    raw, rejects = outcomes(layout, spec)
    assert set(raw) == {f"mine:{hashlib.sha256(url['b'].encode()).hexdigest()[:20]}"}
    assert [(k, v["reason"]) for k, v in rejects.items()] == [("mine:malformed-line-2", "malformed_row")]
    assert "line 2" in rejects["mine:malformed-line-2"]["detail"]


def test_osv5m_import_from_zip_archives_and_folders(home: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "loose").mkdir(parents=True)
    ids = [str(7_000_000 + i) for i in range(6)]
    with zipfile.ZipFile(images / "00.zip", "w") as archive:
        for key in ids[:3]:
            archive.writestr(f"00/{key}.jpg", jpeg_bytes(int(key)))
    for key in ids[3:5]:
        (images / "loose" / f"{key}.jpg").write_bytes(jpeg_bytes(int(key)))
    metadata = tmp_path / "train.csv"
    with metadata.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "latitude", "longitude", "thumb_original_url", "country", "sequence", "captured_at",
                         "creator_username", "creator_id"])
        # ids[5] has no image; ids[0] comes again; the last is hostile
        for i, key in enumerate([*ids, ids[0], "../../etc/passwd"]):
            writer.writerow([key, 50.05 + i * 0.01, 10.1, "https://example.invalid/x.jpg", "DE", f"q{i % 2}",
                             1_500_000_000, "carol", 7])
    spec = remote_spec({"type": "osv5m", "path": str(metadata), "images": str(images)})
    layout = DatasetLayout(home, spec.name)
    for region in spec.region_names:
        ingest_region(spec, layout, region, log=lambda _: None)
    raw, rejects = outcomes(layout, spec)
    assert set(raw) == {f"osv5m:{k}" for k in ids[:5]}
    assert {k: v["reason"] for k, v in rejects.items()} == {f"osv5m:{ids[5]}": "image_missing",
                                                            f"osv5m:{ids[0]}-row-7": "duplicate_id",
                                                            "osv5m:../../etc/passwd": "image_missing"}
    row = raw[f"osv5m:{ids[0]}"]
    assert row["creator"] == "carol" and row["license"] == "CC BY-SA 4.0" and row["sequence_id"] == "osv5m:q0"
    assert row["captured_at"].year == 2017
    # A refresh lists the finished rows by id (found by DuckDB, in bulk), and writes no file.
    stamps = {p: p.stat().st_mtime_ns for p in layout.work.rglob("*") if p.is_file()}
    again = {r: ingest_region(spec, layout, r, log=lambda _: None)["osv5m"] for r in spec.region_names}
    assert sum(s.already_done for s in again.values()) == 8 and sum(s.ingested for s in again.values()) == 0
    assert sum(s.accounting.listed for s in again.values()) == 8
    assert outcomes(layout, spec) == (raw, rejects)
    assert {p: p.stat().st_mtime_ns for p in layout.work.rglob("*") if p.is_file()} == stamps

    # Split into parts, twice: the same rows and rejects, each refresh part listing only its own.
    split = remote_spec({"type": "osv5m", "path": str(metadata), "images": str(images)}, sub_partitions=3)
    parts = DatasetLayout(tmp_path / "split", split.name)
    for _ in range(2):
        runs = [ingest_region(split, parts, u.region, log=lambda _: None, part=u.part)["osv5m"]
                for u in split.ingest_units()]
    assert sum(s.already_done for s in runs) == 8 and all(s.accounting.holds for s in runs)
    found = [set(pq.read_table(parts.raw_images(u.folder, "osv5m")).column("image_id").to_pylist())
             for u in split.ingest_units()]
    assert set().union(*found) == set(raw) and sum(map(len, found)) == len(raw)


_CHILD = """
import json, os, sys
from pathlib import Path
from geosolver_data.store.home import DatasetLayout
from geosolver_data.spec import parse_spec
from geosolver_data.stages import ingest_region
spec = parse_spec(json.loads(os.environ["TEST_SPEC"]))
ingest_region(spec, DatasetLayout(Path(os.environ["GEOSOLVER_HOME"]), spec.name), "north", log=print)
"""


def _raw_and_rejects(home: Path) -> tuple[set, set]:
    layout = DatasetLayout(home, "remote")
    raw = pq.read_table(layout.raw_images("north", "mapillary"), columns=["image_id", "sha256"]).to_pylist()
    rej = pq.read_table(layout.raw_rejects("north", "mapillary"), columns=["image_id", "reason"]).to_pylist()
    return {tuple(r.values()) for r in raw}, {tuple(r.values()) for r in rej}


def test_killed_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imagery = Imagery()
    imagery.add(*world(seed=3, n_north=120, n_south=0))
    fake = FakeMapillary(imagery, TOKEN)
    raw_spec = {"name": "remote", "regions": [{"name": "north", "bbox": NORTH}, {"name": "south", "bbox": SOUTH}],
                "sources": [{"type": "mapillary", "max_retries": 1, "timeout_s": 1.0, "requests_per_second": 0,
                             "allow_private_addresses": True,
                             "concurrency": 2}], "image": {"max_file_bytes": 2_000_000}, "workers": 2}
    with LoopbackServer(fake.app) as server:
        env = {**os.environ, "MAPILLARY_API_URL": server.url, "MAPILLARY_ACCESS_TOKEN": TOKEN,
               "TEST_SPEC": json.dumps(raw_spec), "GEOSOLVER_HOME": str(tmp_path / "killed"),
               "PYTHONPATH": str(ROOT)}
        imagery.sleep_s = 0.1  # ~20 images/s: the run lasts several seconds
        child = subprocess.Popen([sys.executable, "-c", _CHILD], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ledger = tmp_path / "killed" / "work" / "remote" / "ledger" / "north"
        deadline = time.monotonic() + 120
        while not list(ledger.glob("*/rows-*.parquet")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, f"the run ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        imagery.sleep_s = 0.0
        layout = DatasetLayout(tmp_path / "killed", "remote")
        assert not layout.raw_images("north", "mapillary").exists()  # nothing half-done is published
        parts_before = len(list(ledger.glob("*/rows-*.parquet")))

        monkeypatch.setenv("MAPILLARY_API_URL", server.url)
        monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", TOKEN)
        spec = parse_spec(raw_spec)
        resumed = ingest_region(spec, layout, "north", log=lambda _: None)["mapillary"]
        clean_home = tmp_path / "clean"
        ingest_region(spec, DatasetLayout(clean_home, "remote"), "north", log=lambda _: None)

    assert parts_before >= 1 and resumed.already_done >= 1  # the rerun skipped what the killed run finished
    assert _raw_and_rejects(tmp_path / "killed") == _raw_and_rejects(clean_home)
    raw, rejects = _raw_and_rejects(clean_home)
    assert len(raw) + len(rejects) == len([i for i in imagery.images.values() if i.lat >= 50.0])
