"""Ingest one region: read candidate photos, do the per-image work on all cores, write Parquet.

Every candidate ends in exactly one place: a row of the region's raw_images file, a row of its
rejects file, or (when it belongs to another region) that region's run. Candidates whose region
cannot be known (no GPS, bad coordinates, unreadable) are recorded by the partition that owns
strays, so none is counted twice or lost.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from geosolver_data.exif import read_captured_at, read_gps
from geosolver_data.geo import invalid_coordinate_reason
from geosolver_data.images import ImageRejected, open_image, process_opened
from geosolver_data.layout import atomic_path
from geosolver_data.records import RAW_SCHEMA, REJECT_SCHEMA
from geosolver_data.sources.local import LocalFile
from geosolver_data.spec import ImageSpec, Region

Progress = Callable[[int, int], None]
_BATCH_ROWS = 256


@dataclass(frozen=True)
class IngestTask:
    """What a worker needs to process one candidate of one region."""

    region: str
    regions: tuple[Region, ...]
    image: ImageSpec
    source: str
    owns_strays: bool
    license: str = ""
    creator: str = ""


@dataclass
class IngestStats:
    ingested: int = 0
    skipped_other_region: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bytes_written: int = 0

    @property
    def candidates(self) -> int:
        return self.ingested + sum(self.rejected.values())


def route(lat: float, lon: float, regions: tuple[Region, ...]) -> str | None:
    """The first region (in spec order) that contains the point."""
    return next((r.name for r in regions if r.contains(lat, lon)), None)


def _reject(task: IngestTask, image_id: str, reason: str, detail: str, routed: bool = False) -> tuple | None:
    if not (routed or task.owns_strays):
        return None
    return ("reject", {"image_id": image_id, "source": task.source, "region": task.region,
                       "reason": reason, "detail": detail})


def ingest_file(task: IngestTask, item: LocalFile) -> tuple | None:
    """One candidate -> ("raw", row) | ("reject", row) | None (another region's)."""
    try:
        size = item.path.stat().st_size
        if size > task.image.max_file_bytes:
            return _reject(task, item.image_id, "too_large", f"{size} bytes > {task.image.max_file_bytes}")
        data = item.path.read_bytes()
        image = open_image(data, task.image)
    except OSError as exc:
        return _reject(task, item.image_id, "unreadable_file", exc.strerror or str(exc))
    except ImageRejected as exc:
        return _reject(task, item.image_id, exc.reason, exc.detail)
    exif = image.getexif()
    gps = read_gps(exif)
    if gps is None:
        return _reject(task, item.image_id, "missing_gps", "no EXIF GPS position")
    bad = invalid_coordinate_reason(*gps)
    if bad:
        return _reject(task, item.image_id, "invalid_coordinates", bad)
    region = route(*gps, task.regions)
    if region is None:
        return _reject(task, item.image_id, "outside_regions", f"lat={gps[0]:.5f}, lon={gps[1]:.5f}")
    if region != task.region:
        return None
    try:
        done = process_opened(image, task.image)
    except ImageRejected as exc:
        return _reject(task, item.image_id, exc.reason, exc.detail, routed=True)
    return ("raw", {
        "image_id": item.image_id, "source": task.source, "lat": gps[0], "lon": gps[1],
        "captured_at": read_captured_at(exif), "sequence_id": item.sequence_id,
        "license": task.license or None, "creator": task.creator or None,
        "width": done.width, "height": done.height, "sha256": done.sha256, "phash": done.phash,
        "image": done.jpeg,
    })


_TASK: IngestTask | None = None


def _init_worker(task: IngestTask) -> None:
    global _TASK
    _TASK = task
    Image.init()


def _work(item: LocalFile) -> tuple | None:
    assert _TASK is not None
    return ingest_file(_TASK, item)


def default_workers(requested: int = 0) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def _outcomes(task: IngestTask, items: list[LocalFile], workers: int) -> Iterator[tuple | None]:
    if workers <= 1:
        yield from (ingest_file(task, item) for item in items)
        return
    # spawn, not fork: the caller (a Dagster run) has threads, and fork with threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(task,)) as pool:
        yield from pool.map(_work, items, chunksize=8)


class _RawWriter:
    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, RAW_SCHEMA, compression="zstd")
        self.rows: list[dict] = []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= _BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=RAW_SCHEMA))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def ingest(task: IngestTask, items: list[LocalFile], raw_path: Path, rejects_path: Path,
           workers: int = 0, progress: Progress | None = None) -> IngestStats:
    """Ingest every candidate of one source for one region into `raw_path` and `rejects_path`.

    Both files appear atomically at the end: a run killed midway leaves the previous files (or
    none) in place, and the rerun starts over.
    """
    stats, rejects = IngestStats(), []
    last = time.monotonic()
    with atomic_path(raw_path) as raw_tmp, atomic_path(rejects_path) as rej_tmp:
        writer = _RawWriter(raw_tmp)
        for done, outcome in enumerate(_outcomes(task, items, default_workers(workers)), start=1):
            if outcome is None:
                stats.skipped_other_region += 1
            elif outcome[0] == "raw":
                writer.add(outcome[1])
                stats.ingested += 1
                stats.bytes_written += len(outcome[1]["image"])
            else:
                rejects.append(outcome[1])
                stats.rejected[outcome[1]["reason"]] += 1
            if progress and (time.monotonic() - last > 2 or done == len(items)):
                progress(done, len(items))
                last = time.monotonic()
        writer.close()
        pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), rej_tmp)
    return stats
