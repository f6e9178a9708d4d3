"""Test sets: the dataset's own test split, and public benchmarks when their files are present.

Public benchmarks are looked for under `$GEOSOLVER_HOME/benchmarks/<name>/`:
  im2gps3k/, yfcc4k/  an image folder (`images/`) and one CSV with IMG_ID, LAT, LON columns
  osv5m/              `test.csv` (id, latitude, longitude, ...) and the photos under `images/`, as the Hub
                      ships them (`images/test/00.zip`, ...: read in place, each member at its offset)
                      or unpacked (`<id>.jpg` anywhere below)
Their licences do not allow redistribution, so they are never downloaded by Geosolver.

Real files are messy: a listed photo that is absent, or that does not decode, is not scored, and is
counted by its reason (`not_scored`) beside the listed and scored counts; never a traceback, never NaN.
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from geosolver_data.geo import invalid_coordinate_reason
from geosolver_data.ingest.archives import MemberAt, image_index, read_member
from geosolver_data.ingest.images import ImageRejected
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
    listed: int | None = None  # rows its listing holds (public sets), scored or not
    not_scored: dict[str, list[str]] = field(default_factory=dict)  # reason -> the photos left out
    # Public sets: the set with every listed photo that does not decode (under these caps) left out and
    # counted; evaluate() calls it once before any comparator runs. None: nothing to screen.
    screen: Callable[[ImageSpec], TestSet] | None = None


def dataset_test_split(version_dir: Path, limit: int = 0) -> TestSet:
    return dataset_split(version_dir, "test", limit)


def dataset_split(version_dir: Path, split: str, limit: int = 0, rank: int = 0, world_size: int = 1) -> TestSet:
    """One split of a dataset version (`test` is what evaluations report; `validation`, what model cards do);
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


@dataclass(frozen=True)
class Photo:
    """Where one listed photo's bytes are: a file, or a member of a zip archive (read at its offset)."""

    name: str
    path: Path
    member: MemberAt | None = None

    def open(self, ingest: ImageSpec) -> Image.Image:
        """Through the one safe photo loader (a ValueError says why it cannot be read)."""
        if self.member is None:
            return open_photo(self.path, ingest)
        if self.member.size > ingest.max_file_bytes:
            raise ValueError(f"cannot read image {self.name}: too large") from ImageRejected(
                "too_large", f"{self.member.size} bytes")
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                data = read_member(fd, self.member)
            finally:
                os.close(fd)
        except (OSError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"cannot read image {self.name}: {exc}") from ImageRejected("unreadable_file", str(exc))
        return open_photo(data, ingest)

    def stamp(self) -> str:
        stat = self.path.stat()
        return f"{self.name}:{stat.st_size}:{stat.st_mtime_ns}:{self.member.crc if self.member else ''}"


def _reason(exc: ValueError) -> str:
    """A photo's reason for not being scored: ingest's reject reason where there is one."""
    cause = exc.__cause__
    return cause.reason if isinstance(cause, ImageRejected) else "undecodable"


def _photo_set(name: str, rows: list[tuple[str, Photo | None, float | None, float | None]], limit: int) -> TestSet:
    """A public set from its listing: (name, where its photo is or None, lat, lon) per row. A row whose
    position is not a number on the globe is listed and counted as `invalid_coordinates`, never scored."""
    rows = rows[: limit or None]
    placed, invalid = [], []
    for row_name, photo, lat, lon in rows:
        if lat is None or lon is None or invalid_coordinate_reason(lat, lon):
            invalid.append(row_name)
        else:
            placed.append((row_name, photo, lat, lon))
    present = [(photo, lat, lon) for _, photo, lat, lon in placed if photo is not None]
    missing = [row_name for row_name, photo, _, _ in placed if photo is None]
    digest = hashlib.sha256()
    for photo, lat, lon in present:  # the listing and each photo's size and time: cheap, and what changes
        digest.update(f"{photo.stamp()}:{lat}:{lon}\n".encode())
    digest.update(f"missing:{','.join(missing)};invalid:{','.join(invalid)}".encode())
    left_out = {reason: names for reason, names in (("missing", missing), ("invalid_coordinates", invalid)) if names}
    return _scored(name, present, len(rows), left_out, digest.hexdigest()[:16])


def _scored(name: str, present: list[tuple[Photo, float, float]], listed: int, not_scored: dict[str, list[str]],
            fingerprint: str, screened: bool = False) -> TestSet:
    def images(ingest: ImageSpec) -> Iterator[Image.Image]:
        for photo, _, _ in present:
            yield photo.open(ingest)

    def screen(ingest: ImageSpec) -> TestSet:
        kept, left_out = [], {reason: list(names) for reason, names in not_scored.items()}
        for photo, lat, lon in present:
            try:
                photo.open(ingest)
            except ValueError as exc:
                left_out.setdefault(_reason(exc), []).append(photo.name)
                continue
            kept.append((photo, lat, lon))
        return _scored(name, kept, listed, left_out, fingerprint, screened=True)

    latlon = np.array([[lat, lon] for _, lat, lon in present], dtype=np.float64).reshape(-1, 2)
    return TestSet(name, len(present), images, latlon, None, fingerprint, listed=listed, not_scored=not_scored,
                   screen=None if screened else screen)


def _float(value: str | None) -> float | None:
    try:
        number = float(value or "")
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def im2gps_style(folder: Path, name: str, limit: int = 0) -> TestSet:
    """Im2GPS3k / YFCC4k: images/ plus a CSV with IMG_ID, LAT, LON."""
    table = next(iter(sorted(folder.glob("*.csv"))), None)
    if table is None:
        raise FileNotFoundError(f"{folder}: no CSV with IMG_ID, LAT, LON")
    rows = []
    for r in _csv_rows(table):
        image, lat, lon = r.get("IMG_ID") or "", _float(r.get("LAT")), _float(r.get("LON"))
        path = folder / "images" / image
        rows.append((image, Photo(image, path) if image and path.is_file() else None, lat, lon))
    return _photo_set(name, rows, limit)


def osv5m(folder: Path, limit: int = 0) -> TestSet:
    """OSV-5M's test split: test.csv and the photos below images/, in the Hub's zip archives or unpacked."""
    index = image_index(folder / "images") if (folder / "images").is_dir() else None
    found = {} if index is None else {key: i for i, key in enumerate(index.column("key").to_pylist())}
    columns = {} if index is None else {c: index.column(c).to_pylist() for c in index.column_names}
    rows = []
    for r in _csv_rows(folder / "test.csv"):
        key, lat, lon = str(r.get("id") or ""), _float(r.get("latitude")), _float(r.get("longitude"))
        at = found.get(key)
        photo = None
        if at is not None:
            member = None if columns["_member"][at] is None else MemberAt(
                columns["_offset"][at], columns["_packed"][at], columns["_size"][at], columns["_method"][at],
                columns["_crc"][at])
            photo = Photo(f"{key}.jpg", Path(columns["_path"][at]), member)
        rows.append((f"{key}.jpg", photo, lat, lon))
    return _photo_set("osv5m_test", rows, limit)


def public_benchmarks(root: Path, limit: int = 0) -> list[TestSet]:
    """The public test sets present under `root` ($GEOSOLVER_HOME/benchmarks)."""
    found = []
    for name in ("im2gps3k", "yfcc4k"):
        if (root / name / "images").is_dir():
            found.append(im2gps_style(root / name, name, limit))
    if (root / "osv5m" / "test.csv").exists():  # the photos: unpacked or in the Hub's zips
        found.append(osv5m(root / "osv5m", limit))
    return found
