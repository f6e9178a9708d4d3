"""The worker side of ingest: what runs in each process of the pool.

A worker gets candidates in batches and does everything that costs CPU or bytes: it downloads the
batch's URLs on its own event loop (a thread, so downloads overlap the image work) with its share of
the source's connections and rate, reads files and zip members, and does the image work. Only small
results (re-encoded JPEGs and metadata) travel back to the main process, which lists candidates and
keeps the ledger; at many cores the main process would otherwise carry every downloaded byte twice.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import os
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image

from geosolver_data.candidates import Candidate
from geosolver_data.exif import read_captured_at, read_gps
from geosolver_data.fetch import Fetcher, FetchError, FetchPolicy
from geosolver_data.geo import invalid_coordinate_reason
from geosolver_data.images import ImageRejected, ProcessedImage, open_image, process_opened
from geosolver_data.spec import ImageSpec, Region

Outcome = tuple[str, dict] | None  # ("raw", row) | ("reject", row) | None: another region's
REFRESH: Outcome = ("refresh", {})  # a signed URL expired: the main process asks the source for a new one


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
    fetch: FetchPolicy | None = None  # each worker's share of the source's connections and rate


def route(lat: float, lon: float, regions: tuple[Region, ...]) -> str | None:
    """The first region (in spec order) that contains the point."""
    return next((r.name for r in regions if r.contains(lat, lon)), None)


def reject(task: IngestTask, image_id: str, reason: str, detail: str, routed: bool = False) -> Outcome:
    if not (routed or task.owns_strays):
        return None
    return ("reject", {"image_id": image_id, "source": task.source, "region": task.region,
                       "reason": reason, "detail": detail[:300]})


def placement(task: IngestTask, c: Candidate, lat: float, lon: float) -> Outcome | bool:
    """True when the point is this region's; otherwise the outcome (a reject, or None: not ours)."""
    bad = invalid_coordinate_reason(lat, lon)
    if bad:
        return reject(task, c.image_id, "invalid_coordinates", bad)
    region = route(lat, lon, task.regions)
    if region is None:
        return reject(task, c.image_id, "outside_regions", f"lat={lat:.5f}, lon={lon:.5f}")
    return True if region == task.region else None


def _row(task: IngestTask, c: Candidate, lat: float, lon: float, captured_at: datetime | None,
         done: ProcessedImage) -> Outcome:
    return ("raw", {
        "image_id": c.image_id, "source": task.source, "lat": lat, "lon": lon, "captured_at": captured_at,
        "sequence_id": c.sequence_id, "license": c.license or task.license or None,
        "creator": c.creator or task.creator or None, "width": done.width, "height": done.height,
        "sha256": done.sha256, "phash": done.phash, "image": done.jpeg,
    })


def ingest_bytes(task: IngestTask, c: Candidate, data: bytes) -> Outcome:
    """Bytes of a candidate whose position is known (remote sources, archives)."""
    try:
        done = process_opened(open_image(data, task.image), task.image)
    except ImageRejected as exc:
        return reject(task, c.image_id, exc.reason, exc.detail, routed=True)
    assert c.lat is not None and c.lon is not None
    return _row(task, c, c.lat, c.lon, c.captured_at, done)


def ingest_file(task: IngestTask, c: Candidate) -> Outcome:
    """A local photo: position from the candidate, else from EXIF GPS (then routed here)."""
    assert c.path is not None
    path = Path(c.path)
    try:
        size = path.stat().st_size
        if size > task.image.max_file_bytes:
            return reject(task, c.image_id, "too_large", f"{size} bytes > {task.image.max_file_bytes}",
                           routed=c.lat is not None)
        image = open_image(path.read_bytes(), task.image)
    except OSError as exc:
        return reject(task, c.image_id, "unreadable_file", exc.strerror or str(exc), routed=c.lat is not None)
    except ImageRejected as exc:
        return reject(task, c.image_id, exc.reason, exc.detail, routed=c.lat is not None)
    if c.lat is not None and c.lon is not None:
        lat, lon, captured_at = c.lat, c.lon, c.captured_at
    else:
        exif = image.getexif()
        gps = read_gps(exif)
        if gps is None:
            return reject(task, c.image_id, "missing_gps", "no EXIF GPS position")
        placed = placement(task, c, *gps)
        if placed is not True:
            return placed  # type: ignore[return-value]
        (lat, lon), captured_at = gps, read_captured_at(exif)
    try:
        done = process_opened(image, task.image)
    except ImageRejected as exc:
        return reject(task, c.image_id, exc.reason, exc.detail, routed=True)
    return _row(task, c, lat, lon, captured_at, done)


_ZIPS: dict[str, zipfile.ZipFile] = {}


def ingest_member(task: IngestTask, c: Candidate) -> Outcome:
    """A member of a zip archive (OSV-5M ships its images so); archives stay open per worker."""
    assert c.path is not None and c.member is not None
    try:
        archive = _ZIPS.get(c.path) or _ZIPS.setdefault(c.path, zipfile.ZipFile(c.path))
        info = archive.getinfo(c.member)
        if info.file_size > task.image.max_file_bytes:
            return reject(task, c.image_id, "too_large", f"{info.file_size} bytes", routed=True)
        data = archive.read(info)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        return reject(task, c.image_id, "unreadable_file", str(exc)[:200], routed=True)
    return ingest_bytes(task, c, data)


_TASK: IngestTask | None = None
_NET: _Net | None = None


class _Net:
    """A worker's own event loop, in a thread, with its own Fetcher."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.fetcher = Fetcher(policy)
        self._run(self.fetcher.__aenter__())
        self.reported = 0

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def get(self, url: str) -> concurrent.futures.Future[bytes]:
        return asyncio.run_coroutine_threadsafe(self.fetcher.image(url), self.loop)

    def new_retries(self) -> int:
        new, self.reported = self.fetcher.retries - self.reported, self.fetcher.retries
        return new

    def close(self) -> None:
        self._run(self.fetcher.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)


def init_worker(task: IngestTask, parent: int | None = None) -> None:
    global _TASK
    _TASK = task
    Image.init()
    if parent is not None:  # a worker process: leave with the parent, even one killed with -9
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
        atexit.register(close_worker)


def close_worker() -> None:
    global _NET
    if _NET is not None:
        _NET.close()
        _NET = None


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _download_outcome(task: IngestTask, c: Candidate, future: concurrent.futures.Future[bytes]) -> Outcome:
    try:
        data = future.result()
    except FetchError as exc:
        if exc.status == 403 and c.refreshable:
            return REFRESH
        return reject(task, c.image_id, exc.reason, exc.detail, routed=True)
    return ingest_bytes(task, dataclasses.replace(c, url=None), data)


def work_batch(batch: list[Candidate]) -> tuple[list[tuple[str, Outcome]], int]:
    """Every candidate of the batch -> its outcome, plus the HTTP retries this took."""
    global _NET
    assert _TASK is not None
    task = _TASK
    downloads = {}
    if any(c.url for c in batch):
        if _NET is None:
            assert task.fetch is not None, "a URL candidate needs the source's fetch policy"
            _NET = _Net(task.fetch)
        downloads = {_NET.get(c.url): c for c in batch if c.url}
    results: list[tuple[str, Outcome]] = []
    for c in batch:  # files and archive members while the downloads run
        if not c.url:
            results.append((c.image_id, ingest_member(task, c) if c.member else ingest_file(task, c)))
    for future in concurrent.futures.as_completed(downloads):
        c = downloads[future]
        results.append((c.image_id, _download_outcome(task, c, future)))
    return results, _NET.new_retries() if _NET is not None else 0
