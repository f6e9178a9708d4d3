"""raw_images from Mapillary through Dagster: counts as metadata, and the token nowhere in the
instance's storage (event log, run storage) or under GEOSOLVER_HOME."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipelines.dataset import default
from pipelines.resources import GeosolverResource
from tests.data.test_remote_sources import SOURCE_KNOBS, TOKEN, every_byte_under, world
from tests.fakes.imagery import Imagery
from tests.fakes.mapillary import FakeMapillary
from tests.fakes.server import LoopbackServer


def test_raw_images_from_mapillary_keeps_the_token_out_of_dagster(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    imagery = Imagery()
    imagery.add(*world())
    fake = FakeMapillary(imagery, TOKEN)
    spec_path = tmp_path / "remote.yaml"
    # Region names match the test spec's partitions; the box is the fake world's.
    spec_path.write_text(yaml.safe_dump({
        "name": "remote", "workers": 1, "image": {"max_file_bytes": 2_000_000},
        "regions": [{"name": "europe", "bbox": [10.0, 50.0, 10.2, 50.2]},
                    {"name": "americas", "bbox": [10.0, 49.8, 10.2, 50.0]}],
        "sources": [{"type": "mapillary", **SOURCE_KNOBS}],
    }))
    dagster_home, home = tmp_path / "dagster", tmp_path / "home"
    dagster_home.mkdir()
    with LoopbackServer(fake.app) as server, dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        monkeypatch.setenv("MAPILLARY_API_URL", server.url)
        monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", TOKEN)
        result = dg.materialize([default.assets.raw_images], instance=instance, partition_key="europe",
                                resources={"geosolver": GeosolverResource(home=str(home), spec_path=str(spec_path))})
        assert result.success
        meta = result.asset_materializations_for_node("raw_images")[0].metadata
        listed = sum(1 for i in imagery.images.values() if i.lat >= 50.0)
        assert meta["images_total"].value + meta["rejects_total"].value == listed
        assert meta["http_retries"].value >= 3 and meta["listing_complete"].value is True
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("europe/mapillary:" in m and "/s" in m for m in logs)
    stored = list(every_byte_under(dagster_home, home))
    assert any(b"europe/mapillary" in data for _, data in stored)  # the event log is in what is scanned
    for path, data in stored:
        assert TOKEN.encode() not in data and b"sig=" not in data, path
