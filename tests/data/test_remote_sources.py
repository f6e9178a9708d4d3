"""Remote sources end to end against real loopback servers that speak the Mapillary v4 and Commons
shapes: exact accounting of every listed id, faults, tiling, signed URLs, tokens, incremental refresh."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from geosolver_data import stages
from geosolver_data.ingest.sources.base import SourceError
from geosolver_data.spec import DatasetSpec, parse_spec
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.conftest import TOKEN
from tests.fakes.commons import FakeCommons
from tests.fakes.imagery import FakeImage, Imagery
from tests.fakes.mapillary import FakeMapillary
from tests.fakes.server import LoopbackServer

NORTH = [10.0, 50.0, 10.2, 50.2]
SOUTH = [10.0, 49.8, 10.2, 50.0]
FAULT_REASONS = {
    "429_forever": "http_429", "500_forever": "http_500", "timeout": "timeout", "truncated": "truncated",
    "html": "not_an_image", "oversize": "too_large", "bomb": "too_many_pixels", "corrupt": "undecodable",
    "not_found": "http_404", "redirect_loop": "too_many_redirects",
}
RECOVERS = ("429_then_ok", "500_then_ok", "expired")
SOURCE_KNOBS = {"max_retries": 1, "timeout_s": 1.0, "requests_per_second": 0, "concurrency": 4,
                "allow_private_addresses": True}  # the fake hosts listen on loopback


def world(seed: int = 0, n_north: int = 30, n_south: int = 12, faults: bool = True) -> list[FakeImage]:
    rng = random.Random(seed)
    images = []
    for i in range(n_north + n_south):
        box = NORTH if i < n_north else SOUTH
        images.append(FakeImage(str(1000 + i), rng.uniform(box[1] + 1e-4, box[3] - 1e-4),
                                rng.uniform(box[0] + 1e-4, box[2] - 1e-4), captured_at_ms=1_600_000_000_000 + i,
                                sequence=f"s{i % 5}", creator=f"user{i % 3}"))
    images.append(FakeImage("2000", 50.0, 10.1))  # on the shared edge: both regions list it
    images.append(FakeImage("2001", 50.1, 10.1, is_pano=True))
    if faults:
        for j, fault in enumerate([*FAULT_REASONS, *RECOVERS]):
            images.append(FakeImage(str(3000 + j), 50.05 + j * 0.005, 10.05, fault=fault))
    return images


def remote_spec(source: dict, **extra: object) -> DatasetSpec:
    regions = [{"name": "north", "bbox": NORTH}, {"name": "south", "bbox": SOUTH}]
    return parse_spec({"name": "remote", "regions": regions,
                       "sources": [{**SOURCE_KNOBS, **source}], "image": {"max_file_bytes": 2_000_000},
                       "workers": 1, **extra})


def outcomes(layout: DatasetLayout, spec: DatasetSpec) -> tuple[dict[str, dict], dict[str, dict]]:
    raw, rejects = {}, {}
    label = spec.sources[0].label
    for region in spec.region_names:
        for row in pq.read_table(layout.raw_images(region, label)).to_pylist():
            assert row["image_id"] not in raw, f"{row['image_id']} twice in raw_images"
            raw[row["image_id"]] = {**row, "region": region}
        for row in pq.read_table(layout.raw_rejects(region, label)).to_pylist():
            assert row["image_id"] not in rejects and row["image_id"] not in raw
            rejects[row["image_id"]] = row
    return raw, rejects


def every_byte_under(*roots: Path) -> Iterator[tuple[Path, bytes]]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                yield path, path.read_bytes()


def test_mapillary_every_listed_image_ends_once_with_its_reason(mapillary, home: Path) -> None:
    imagery, fake = mapillary
    imagery.add(*world())
    spec = remote_spec({"type": "mapillary", "page_limit": 8})
    layout = DatasetLayout(home, spec.name)
    logs: list[str] = []
    stats = {r: ingest_region(spec, layout, r, log=logs.append)["mapillary"] for r in spec.region_names}

    raw, rejects = outcomes(layout, spec)
    assert set(raw) | set(rejects) == {f"mapillary:{i}" for i in imagery.images}
    assert set(raw).isdisjoint(rejects)
    for image in imagery.images.values():
        if image.fault in FAULT_REASONS:
            assert rejects[f"mapillary:{image.id}"]["reason"] == FAULT_REASONS[image.fault], image.fault
    assert rejects["mapillary:2001"]["reason"] == "panorama"
    assert all(f"mapillary:{3000 + len(FAULT_REASONS) + k}" in raw for k in range(len(RECOVERS)))
    assert raw["mapillary:2000"]["region"] == "north"  # the edge image, listed twice, kept once
    assert stats["south"].skipped_other_region == 1

    row = raw["mapillary:1000"]
    assert row["license"] == "CC BY-SA 4.0" and row["creator"] == "user0" and row["sequence_id"] == "mapillary:s0"
    assert row["captured_at"].timestamp() * 1000 == 1_600_000_000_000
    assert max(row["width"], row["height"]) == 320 and row["image"][:3] == b"\xff\xd8\xff"

    # Tiling: no search box over 0.01 deg² (the fake would answer 400), and full replies were split.
    boxes = [[float(v) for v in s["query"]["bbox"].split(",")] for s in fake.searches]
    assert all((b[2] - b[0]) * (b[3] - b[1]) <= 0.01 + 1e-9 for b in boxes)
    assert len(boxes) > 8  # 4 base tiles per region, plus quarters of the full ones

    # The token goes only to the API, and neither it nor a signed URL is written anywhere or logged.
    assert all(s["headers"].get("Authorization") == f"OAuth {TOKEN}" for s in fake.searches)
    assert not any("Authorization" in r["headers"] for r in imagery.requests)
    for path, data in every_byte_under(home):
        assert TOKEN.encode() not in data and b"sig=" not in data, path
    assert not any(TOKEN in line or "sig=" in line for line in logs)
    assert any("images," in line and "/s" in line for line in logs)  # progress with a rate


def test_bad_or_missing_token_stops_with_a_clear_error(mapillary, home: Path, monkeypatch) -> None:
    imagery, _ = mapillary
    imagery.add(*world(faults=False))
    spec = remote_spec({"type": "mapillary"})
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "MLY|wrong")
    with pytest.raises(SourceError, match="MAPILLARY_ACCESS_TOKEN") as info:
        ingest_region(spec, DatasetLayout(home, spec.name), "north", log=lambda _: None)
    assert "MLY|wrong" not in str(info.value) and "401" in str(info.value)
    monkeypatch.delenv("MAPILLARY_ACCESS_TOKEN")
    with pytest.raises(SourceError, match="set MAPILLARY_ACCESS_TOKEN"):
        ingest_region(spec, DatasetLayout(home, spec.name), "north", log=lambda _: None)


def test_a_refresh_fetches_only_what_is_new(mapillary, home: Path) -> None:
    imagery, fake = mapillary
    imagery.add(*world(faults=False))
    spec = remote_spec({"type": "mapillary"})
    layout = DatasetLayout(home, spec.name)
    ingest_region(spec, layout, "north", log=lambda _: None)
    first, hits = outcomes_north(layout), dict(imagery.hits)
    fake.searches.clear()

    imagery.add(FakeImage("5000", 50.11, 10.11, captured_at_ms=1_700_000_000_000),
                FakeImage("5001", 50.12, 10.12, captured_at_ms=1_700_000_000_001))
    stats = ingest_region(spec, layout, "north", log=lambda _: None)["mapillary"]
    assert stats.ingested == 2 and stats.already_done >= 1
    assert {k: v for k, v in imagery.hits.items() if k in hits} == hits  # nothing old fetched again
    assert all("start_captured_at" in s["query"] for s in fake.searches)  # the watermark narrows the search
    assert outcomes_north(layout) == first | {"mapillary:5000", "mapillary:5001"}


def outcomes_north(layout: DatasetLayout) -> set[str]:
    return set(pq.read_table(layout.raw_images("north", "mapillary"), columns=["image_id"]).column(0).to_pylist())


def test_commons_geosearch_with_continuation_and_big_boxes(home: Path) -> None:
    imagery = Imagery()
    fake = FakeCommons(imagery, max_span=0.15)
    pages = [FakeImage(str(100 + i), 50.01 + i * 0.004, 10.01 + i * 0.003, creator="Alice") for i in range(14)]
    pages.append(FakeImage("900", 50.15, 10.15, is_pano=True))  # served as an SVG: not a photo
    pages.append(FakeImage("901", 50.16, 10.16, fault="html"))
    imagery.add(*pages)
    with LoopbackServer(fake.app) as server:
        spec = remote_spec({"type": "commons", "url": f"{server.url}/w/api.php", "tile_deg": 1.0,
                            "user_agent": "GeosolverTests/1.0 (tests@example.org)"})
        layout = DatasetLayout(home, spec.name)
        for region in spec.region_names:
            ingest_region(spec, layout, region, log=lambda _: None)
    raw, rejects = outcomes(layout, spec)
    assert set(raw) == {f"commons:{100 + i}" for i in range(14)}
    assert rejects["commons:900"]["reason"] == "unsupported_format"
    assert rejects["commons:901"]["reason"] == "not_an_image"
    row = raw["commons:100"]
    assert row["creator"] == "Alice (https://commons.wikimedia.org/wiki/User:Alice)"  # the Artist link, as text
    assert row["license"] == "CC BY-SA 4.0" and row["captured_at"].year == 2019
    assert any("iicontinue" in c["query"] for c in fake.calls)  # imageinfo came in several replies
    assert all(c["headers"]["User-Agent"] == "GeosolverTests/1.0 (tests@example.org)" for c in fake.calls)
    spans = [[float(v) for v in c["query"]["ggsbbox"].split("|")] for c in fake.calls]
    assert any(t - b > 0.15 for t, _, b, _ in spans) and any(t - b <= 0.15 for t, _, b, _ in spans)  # toobig: split


def test_refresh_publishes_a_new_version_only_when_images_are_new(mapillary, home: Path) -> None:
    imagery, _ = mapillary
    imagery.add(*world(faults=False))
    spec = remote_spec({"type": "mapillary"}, balance={"cap": 1000})  # keep every image: the test counts rows
    layout = DatasetLayout(home, spec.name)
    first = stages.build_dataset(spec, layout, log=lambda _: None)
    again = stages.build_dataset(spec, layout, log=lambda _: None)
    assert again.version == first.version and not again.new

    imagery.add(FakeImage("6000", 50.15, 10.05, captured_at_ms=1_700_000_000_000, sequence="new"))
    third = stages.build_dataset(spec, layout, log=lambda _: None)
    assert third.new and third.version != first.version and third.manifest["rows"] == first.manifest["rows"] + 1
    assert sorted(p.name for p in layout.versions.iterdir() if not p.name.startswith(".") and p.is_dir()) == sorted(
        [first.version, third.version])


def test_boxes_the_api_refuses_and_failed_searches_are_retried_or_split(home: Path, monkeypatch) -> None:
    imagery = Imagery()
    imagery.add(*world(faults=False))
    fake = FakeMapillary(imagery, TOKEN, search_faults=2, max_area=0.003)  # 400 for 0.1° tiles; two 500s
    with LoopbackServer(fake.app) as server:
        monkeypatch.setenv("MAPILLARY_API_URL", server.url)
        monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", TOKEN)
        spec = remote_spec({"type": "mapillary", "max_retries": 2})
        layout = DatasetLayout(home, spec.name)
        stats = {r: ingest_region(spec, layout, r, log=lambda _: None)["mapillary"] for r in spec.region_names}
    raw, rejects = outcomes(layout, spec)
    assert set(raw) | set(rejects) == {f"mapillary:{i}" for i in imagery.images}
    assert all(s.listing_complete for s in stats.values())
    assert stats["north"].retries >= 2  # the two 500s were retried


def test_two_mapillary_sources_keep_their_own_ids(mapillary, home: Path) -> None:
    imagery, _ = mapillary
    imagery.add(*world(faults=False))
    spec = parse_spec({"name": "two", "regions": [{"name": "north", "bbox": NORTH}], "workers": 1,
                       "sources": [{"type": "mapillary", "name": "mly_city", **SOURCE_KNOBS},
                                   {"type": "mapillary", "name": "mly_rural", **SOURCE_KNOBS}]})
    layout = DatasetLayout(home, spec.name)
    stats = ingest_region(spec, layout, "north", log=lambda _: None)
    for label in ("mly_city", "mly_rural"):
        rows = pq.read_table(layout.raw_images("north", label), columns=["image_id", "sequence_id"]).to_pylist()
        assert rows and all(r["image_id"].startswith(f"{label}:") for r in rows)
        assert all(r["sequence_id"].startswith(f"{label}:") for r in rows)
        assert stats[label].accounting.holds
    dedup = stages.deduplicate_dataset(spec, layout)  # ids are unique across sources; the copies go as exact
    assert dedup.kept == stats["mly_city"].total_rows and dedup.dropped["exact"] == stats["mly_rural"].total_rows


def test_commons_artist_html_becomes_text_and_a_link() -> None:
    from geosolver_data.ingest.sources.commons import credit

    assert credit('<a href="//commons.wikimedia.org/wiki/User:Jo" title="x">Jo &amp; Co</a>') == \
        "Jo & Co (https://commons.wikimedia.org/wiki/User:Jo)"
    assert credit('<a href="javascript:alert(1)">Eve</a><script>alert(2)</script>') == "Eve alert(2)"
    assert credit("<span>Plain Name</span>") == "Plain Name" and credit(None) is None
