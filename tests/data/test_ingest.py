from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from geosolver_data.ingest.progress import Progress
from geosolver_data.spec import parse_spec
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.images_util import encode, noise_image

PLACES = {
    "trip/paris.jpg": (48.8566, 2.3522), "trip/berlin.png": (52.52, 13.405), "madrid.webp": (40.4168, -3.7038),
    "us/nyc.jpg": (40.7128, -74.006), "us/rio.jpg": (-22.9068, -43.1729), "tokyo.jpg": (35.6762, 139.6503),
    "null.jpg": (0.0, 0.0),
}


def _folder(root: Path) -> Path:
    for i, (name, (lat, lon)) in enumerate(PLACES.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix]
        path.write_bytes(encode(noise_image(i), fmt, lat=lat, lon=lon))
    (root / "nogps.jpg").write_bytes(encode(noise_image(20)))
    (root / "trip" / "cut.jpg").write_bytes(encode(noise_image(21), lat=48.0, lon=2.0)[:2500])
    (root / "page.jpg").write_text("<html>Too Many Requests</html>")
    (root / "readme.txt").write_text("not a photo, not a candidate")
    (root / ".hidden.jpg").write_bytes(encode(noise_image(22), lat=48.0, lon=2.0))
    Image.new("RGB", (8, 8)).save(root / "trip" / ".thumbs.jpg")
    return root


def _spec(folder: Path, workers: int):
    return parse_spec({
        "name": "local", "workers": workers,
        "regions": [{"name": "europe", "bbox": [-11, 35, 32, 61]}, {"name": "americas", "bbox": [-125, -40, -34, 50]}],
        "sources": [{"type": "local", "name": "mine", "path": str(folder), "license": "CC0", "creator": "me"}],
    })


@pytest.mark.parametrize("workers", [1, 2])
def test_every_candidate_lands_exactly_once(tmp_path: Path, workers: int) -> None:
    spec = _spec(_folder(tmp_path / "photos"), workers)
    layout = DatasetLayout(tmp_path / "home", spec.name)
    logs: list[str] = []
    stats = {r: ingest_region(spec, layout, r, log=logs.append)["mine"] for r in spec.region_names}
    raw = {r: pq.read_table(layout.raw_images(r, "mine")).to_pylist() for r in spec.region_names}
    rej = {r: pq.read_table(layout.raw_rejects(r, "mine")).to_pylist() for r in spec.region_names}

    assert sorted(row["image_id"] for row in raw["europe"]) == [
        "mine:madrid.webp", "mine:trip/berlin.png", "mine:trip/paris.jpg"]
    assert sorted(row["image_id"] for row in raw["americas"]) == ["mine:us/nyc.jpg", "mine:us/rio.jpg"]
    reasons = {row["image_id"]: row["reason"] for rows in rej.values() for row in rows}
    assert reasons == {
        "mine:tokyo.jpg": "outside_regions", "mine:null.jpg": "invalid_coordinates",
        "mine:nogps.jpg": "missing_gps", "mine:trip/cut.jpg": "undecodable", "mine:page.jpg": "not_an_image",
    }
    assert rej["americas"] == []  # strays are recorded once, by the first region
    all_ids = [row["image_id"] for rows in (*raw.values(), *rej.values()) for row in rows]
    assert len(all_ids) == len(set(all_ids)) == 10
    assert stats["europe"].ingested == 3 and sum(stats["europe"].rejected.values()) == 5
    assert stats["americas"].skipped_other_region == 8 and stats["americas"].candidates == 2

    paris = next(row for row in raw["europe"] if row["image_id"] == "mine:trip/paris.jpg")
    assert paris["sequence_id"] == "mine:trip" and paris["license"] == "CC0" and paris["creator"] == "me"
    assert abs(paris["lat"] - 48.8566) < 1e-6 and paris["captured_at"].year == 2020
    assert min(paris["width"], paris["height"]) == 336 and paris["image"][:2] == b"\xff\xd8"
    assert any("10/10 images" in line for line in logs)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "nowhere", 1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest_region(spec, DatasetLayout(tmp_path / "home", spec.name), "europe")


def test_unknown_region_is_a_clear_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 1)
    with pytest.raises(ValueError, match="not in spec"):
        ingest_region(spec, DatasetLayout(tmp_path / "home", spec.name), "mars")


def test_progress_shows_eta_while_listing_and_percentage_once_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    lines: list[str] = []
    progress = Progress("north/src", lines.append, every_s=5.0, bar=False)
    progress.listed(100)
    clock[0] += 10
    progress.advance(20)  # 2 images/s, 80 listed images to go, more may come
    assert lines[-1] == "north/src: 20/100+ listed images, 2.0/s, ETA >= 40s"
    progress.listed(100)
    progress.listing_finished()
    clock[0] += 10
    progress.advance(20)
    assert lines[-1] == "north/src: 40/200 images, 2.0/s (20%), ETA 1m20s"
