"""One region split into sub-partitions: parts ingested in any order, against a hostile host, give the
files and the dataset version an unsplit ingest gives, and no image is fetched twice."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from geosolver_data import stages
from geosolver_data.parts import IngestUnit, part_of
from geosolver_data.spec import DatasetSpec
from geosolver_data.spec_errors import SpecError
from geosolver_data.store.home import DatasetLayout
from tests.data.conftest import TOKEN
from tests.data.test_remote_sources import remote_spec, world
from tests.fakes.imagery import Imagery
from tests.fakes.mapillary import FakeMapillary
from tests.fakes.server import LoopbackServer

PARTS = 4


def _ingest(home: Path, spec: DatasetSpec, order: list[IngestUnit],
            monkeypatch: pytest.MonkeyPatch) -> tuple[DatasetLayout, Counter[str]]:
    """Every unit, in `order`, against a fresh host serving the same hostile world; its hits per image."""
    imagery = Imagery()
    imagery.add(*world(seed=5, n_north=40, n_south=16))
    with LoopbackServer(FakeMapillary(imagery, TOKEN).app) as server:
        monkeypatch.setenv("MAPILLARY_API_URL", server.url)
        monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", TOKEN)
        layout = DatasetLayout(home, spec.name)
        for unit in order:
            stats = stages.ingest_region(spec, layout, unit.region, log=lambda _: None, part=unit.part)
            assert stats["mapillary"].accounting.holds
    return layout, imagery.hits


def _rows(layout: DatasetLayout, spec: DatasetSpec) -> tuple[dict[str, tuple], dict[str, str]]:
    raw, rejects = {}, {}
    for unit in spec.ingest_units():
        for row in pq.read_table(layout.raw_images(unit.folder, "mapillary"),
                                 columns=["image_id", "sha256", "phash", "lat", "lon"]).to_pylist():
            assert unit.owns(row["image_id"]) and row["image_id"] not in raw
            raw[row["image_id"]] = (row["sha256"], row["phash"], row["lat"], row["lon"])
        for row in pq.read_table(layout.raw_rejects(unit.folder, "mapillary")).to_pylist():
            assert unit.owns(row["image_id"]) and row["image_id"] not in rejects
            rejects[row["image_id"]] = row["reason"]
    return raw, rejects


def test_parts_in_any_order_equal_the_unsplit_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = remote_spec({"type": "mapillary"})
    split = remote_spec({"type": "mapillary"}, sub_partitions=PARTS)
    assert [u.name for u in split.ingest_units()][:2] == ["north|0", "north|1"]
    order = split.ingest_units()
    random.Random(11).shuffle(order)
    assert [u.region for u in order] != sorted(u.region for u in order)  # the regions' parts interleave

    one, one_hits = _ingest(tmp_path / "whole", whole, whole.ingest_units(), monkeypatch)
    many, many_hits = _ingest(tmp_path / "split", split, order, monkeypatch)

    raw, rejects = _rows(many, split)
    assert (raw, rejects) == _rows(one, whole)
    assert len(raw) > 40 and len(rejects) >= 10  # the faults are rejected in the parts that own them
    stored_per_part = Counter(part_of(i, PARTS) for i in raw)
    assert len(stored_per_part) == PARTS  # every part stored some
    assert many_hits == one_hits  # each image fetched (and retried) as often as unsplit: never by two parts

    # Each part's folder holds its own ledger, listing and files, and nothing of another region.
    assert sorted(p.name for p in (many.work / "raw_images" / "north").iterdir()) == [
        f"part-{k}-of-{PARTS}" for k in range(PARTS)]
    listed = [set(pq.read_table(many.listing(u.folder, "mapillary")).column(0).to_pylist())
              for u in split.ingest_units()]
    assert sum(map(len, listed)) == len(set().union(*listed))  # each id listed by one part only

    assert stages.build_dataset(split, many).version == stages.build_dataset(whole, one).version


def test_an_unknown_part_and_a_missing_part_are_clear_errors(tmp_path: Path) -> None:
    split = remote_spec({"type": "mapillary"}, sub_partitions=PARTS)
    layout = DatasetLayout(tmp_path, split.name)
    with pytest.raises(SpecError, match=r"part 4 of region 'north' is not in 0..3 \(sub_partitions: 4\)"):
        stages.ingest_region(split, layout, "north", part=4)
    missing = r"8 region part/source pair\(s\).*part-0-of-4.*every region\|part partition"
    with pytest.raises(stages.ArtifactMissing, match=missing):
        stages.deduplicate_dataset(split, layout)
