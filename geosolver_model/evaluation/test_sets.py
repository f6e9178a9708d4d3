"""Test sets: the dataset's own test split, and public benchmarks when their files are present.

Public benchmarks are looked for under `$GEOSOLVER_HOME/benchmarks/<name>/`:
  im2gps3k/, yfcc4k/  an image folder (`images/`) and one CSV with IMG_ID, LAT, LON columns
  osv5m/              `test.csv` (id, latitude, longitude, ...) and images under `images/` as <id>.jpg
Their licences do not allow redistribution, so they are never downloaded by Geosolver.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from geosolver_data.spec import ImageSpec
from geosolver_data.store.manifests import read_dataset_manifest
from geosolver_model.net.images import decode, open_photo


@dataclass(frozen=True)
class TestSet:
    name: str
    size: int
    # Decodes lazily, in order, each time it is called: the images at their stored size. A raw photo
    # is made upright and resized by the given ImageSpec, as ingest would have stored it.
    images: Callable[[ImageSpec], Iterator[Image.Image]]
    latlon: np.ndarray  # (N, 2)
    country: np.ndarray | None  # (N,) ISO codes when known
    fingerprint: str = ""  # changes when the set's contents do (an evaluation's version depends on it)
    ids: np.ndarray | None = None  # (N,) image ids, when the set has them (a dataset split)


def dataset_test_split(version_dir: Path, limit: int = 0) -> TestSet:
    return dataset_split(version_dir, "test", limit)


def dataset_split(version_dir: Path, split: str, limit: int = 0, rank: int = 0, world_size: int = 1) -> TestSet:
    """One split of a dataset version (`test` is what evaluations report; `val`, what model cards do);
    with `world_size` > 1, the rows rank, rank + world_size, ... of it (one DDP rank's share)."""
    manifest = read_dataset_manifest(version_dir)
    paths = manifest.shard_paths(version_dir, split)
    named = f"{manifest.dataset}:{manifest.version}"
    if not paths:
        return TestSet(f"dataset_{split}", 0, lambda ingest: iter(()), np.zeros((0, 2)), np.array([]),
                       f"{named}:{split}:empty")
    table = pq.ParquetDataset(paths).read(columns=["image_id", "image", "lat", "lon", "country"])
    if limit:
        table = table.slice(0, limit)
    if world_size > 1:
        table = table.take(np.arange(rank, table.num_rows, world_size))
    latlon = np.stack([table.column("lat").to_numpy(), table.column("lon").to_numpy()], axis=1)
    def images(ingest: ImageSpec) -> Iterator[Image.Image]:  # shard rows are stored already
        return (decode(table.column("image")[i].as_py()) for i in range(table.num_rows))

    return TestSet(f"dataset_{split}", table.num_rows, images, latlon, np.array(table.column("country").to_pylist()),
                   f"{named}:{limit}" if split == "test" else f"{named}:{split}:{limit}",
                   np.array(table.column("image_id").to_pylist()))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _folder_set(name: str, rows: list[tuple[Path, float, float]], limit: int) -> TestSet:
    rows = [r for r in rows if r[0].exists()][: limit or None]
    digest = hashlib.sha256()
    for path, lat, lon in rows:  # the listing and each image's size and time: cheap, and what changes
        stat = path.stat()
        digest.update(f"{path.name}:{lat}:{lon}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())

    def images(ingest: ImageSpec) -> Iterator[Image.Image]:
        for path, _, _ in rows:
            yield open_photo(path, ingest)

    return TestSet(name, len(rows), images, np.array([[lat, lon] for _, lat, lon in rows]).reshape(-1, 2), None,
                   digest.hexdigest()[:16])


def im2gps_style(folder: Path, name: str, limit: int = 0) -> TestSet:
    """Im2GPS3k / YFCC4k: images/ plus a CSV with IMG_ID, LAT, LON."""
    table = next(iter(sorted(folder.glob("*.csv"))), None)
    if table is None:
        raise FileNotFoundError(f"{folder}: no CSV with IMG_ID, LAT, LON")
    rows = [(folder / "images" / r["IMG_ID"], float(r["LAT"]), float(r["LON"])) for r in _csv_rows(table)]
    return _folder_set(name, rows, limit)


def osv5m(folder: Path, limit: int = 0) -> TestSet:
    rows = [(folder / "images" / f"{r['id']}.jpg", float(r["latitude"]), float(r["longitude"]))
            for r in _csv_rows(folder / "test.csv")]
    return _folder_set("osv5m_test", rows, limit)


def public_benchmarks(root: Path, limit: int = 0) -> list[TestSet]:
    """The public test sets present under `root` ($GEOSOLVER_HOME/benchmarks)."""
    found = []
    for name in ("im2gps3k", "yfcc4k"):
        if (root / name / "images").is_dir():
            found.append(im2gps_style(root / name, name, limit))
    if (root / "osv5m" / "test.csv").exists():
        found.append(osv5m(root / "osv5m", limit))
    return found
