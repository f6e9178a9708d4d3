"""The ingest engine: one region of one source, from candidates to the region's raw_images.

Sources list candidates (sources/); this module reads their bytes (a URL through the async
fetcher, a file, a zip member), does the image work on all cores in a process pool, and records
every outcome in the ledger. Every candidate ends in exactly one place: a row of raw_images, a row
of the rejects file, or (when it belongs to another region) that region's run. Candidates whose
region cannot be known (no GPS, bad coordinates, unreadable) are recorded by the partition that
owns strays, so none is counted twice or lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import threading
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from PIL import Image

from geosolver_data.candidates import Candidate
from geosolver_data.exif import read_captured_at, read_gps
from geosolver_data.fetch import Fetcher, FetchError
from geosolver_data.geo import invalid_coordinate_reason
from geosolver_data.images import ImageRejected, ProcessedImage, open_image, process_opened
from geosolver_data.ledger import Ledger
from geosolver_data.progress import Progress
from geosolver_data.sources.base import Source
from geosolver_data.spec import ImageSpec, Region

Outcome = tuple[str, dict] | None  # ("raw", row) | ("reject", row) | None: another region's
_FLUSH_ROWS = 256
_FLUSH_BYTES = 64 << 20
_FLUSH_SECONDS = 2.0


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
    already_done: int = 0  # finished by an earlier run, per the ledger
    rejected: Counter[str] = field(default_factory=Counter)
    bytes_written: int = 0
    retries: int = 0  # HTTP requests repeated after 429/5xx/timeouts
    listing_complete: bool = True  # every listing request was answered (else the watermark stays)
    total_rows: int = 0  # rows in the region's raw_images after this run
    total_rejects: Counter[str] = field(default_factory=Counter)

    @property
    def candidates(self) -> int:
        """Candidates this run decided (ingested or rejected)."""
        return self.ingested + sum(self.rejected.values())


def route(lat: float, lon: float, regions: tuple[Region, ...]) -> str | None:
    """The first region (in spec order) that contains the point."""
    return next((r.name for r in regions if r.contains(lat, lon)), None)


def _reject(task: IngestTask, image_id: str, reason: str, detail: str, routed: bool = False) -> Outcome:
    if not (routed or task.owns_strays):
        return None
    return ("reject", {"image_id": image_id, "source": task.source, "region": task.region,
                       "reason": reason, "detail": detail[:300]})


def placement(task: IngestTask, c: Candidate, lat: float, lon: float) -> Outcome | bool:
    """True when the point is this region's; otherwise the outcome (a reject, or None: not ours)."""
    bad = invalid_coordinate_reason(lat, lon)
    if bad:
        return _reject(task, c.image_id, "invalid_coordinates", bad)
    region = route(lat, lon, task.regions)
    if region is None:
        return _reject(task, c.image_id, "outside_regions", f"lat={lat:.5f}, lon={lon:.5f}")
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
        return _reject(task, c.image_id, exc.reason, exc.detail, routed=True)
    assert c.lat is not None and c.lon is not None
    return _row(task, c, c.lat, c.lon, c.captured_at, done)


def ingest_file(task: IngestTask, c: Candidate) -> Outcome:
    """A local photo: position from the candidate, else from EXIF GPS (then routed here)."""
    assert c.path is not None
    path = Path(c.path)
    try:
        size = path.stat().st_size
        if size > task.image.max_file_bytes:
            return _reject(task, c.image_id, "too_large", f"{size} bytes > {task.image.max_file_bytes}",
                           routed=c.lat is not None)
        image = open_image(path.read_bytes(), task.image)
    except OSError as exc:
        return _reject(task, c.image_id, "unreadable_file", exc.strerror or str(exc), routed=c.lat is not None)
    except ImageRejected as exc:
        return _reject(task, c.image_id, exc.reason, exc.detail, routed=c.lat is not None)
    if c.lat is not None and c.lon is not None:
        lat, lon, captured_at = c.lat, c.lon, c.captured_at
    else:
        exif = image.getexif()
        gps = read_gps(exif)
        if gps is None:
            return _reject(task, c.image_id, "missing_gps", "no EXIF GPS position")
        placed = placement(task, c, *gps)
        if placed is not True:
            return placed  # type: ignore[return-value]
        (lat, lon), captured_at = gps, read_captured_at(exif)
    try:
        done = process_opened(image, task.image)
    except ImageRejected as exc:
        return _reject(task, c.image_id, exc.reason, exc.detail, routed=True)
    return _row(task, c, lat, lon, captured_at, done)


_ZIPS: dict[str, zipfile.ZipFile] = {}


def ingest_member(task: IngestTask, c: Candidate) -> Outcome:
    """A member of a zip archive (OSV-5M ships its images so); archives stay open per worker."""
    assert c.path is not None and c.member is not None
    try:
        archive = _ZIPS.get(c.path) or _ZIPS.setdefault(c.path, zipfile.ZipFile(c.path))
        info = archive.getinfo(c.member)
        if info.file_size > task.image.max_file_bytes:
            return _reject(task, c.image_id, "too_large", f"{info.file_size} bytes", routed=True)
        data = archive.read(info)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        return _reject(task, c.image_id, "unreadable_file", str(exc)[:200], routed=True)
    return ingest_bytes(task, c, data)


_TASK: IngestTask | None = None


def _init_worker(task: IngestTask, parent: int | None = None) -> None:
    global _TASK
    _TASK = task
    Image.init()
    if parent is not None:  # a worker process: leave with the parent, even one killed with -9
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _work(c: Candidate, data: bytes | None) -> Outcome:
    assert _TASK is not None
    if data is not None:
        return ingest_bytes(_TASK, c, data)
    return ingest_member(_TASK, c) if c.member else ingest_file(_TASK, c)


def default_workers(requested: int = 0) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


@contextlib.contextmanager
def _executor(task: IngestTask, workers: int) -> Iterator[Executor]:
    if workers <= 1:
        _init_worker(task)
        with ThreadPoolExecutor(1) as pool:
            yield pool
        return
    # spawn, not fork: the caller (a Dagster run) has threads, and fork with threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(task, os.getpid())) as pool:
        yield pool


class _Run:
    """The state of one ingest run: outcomes are recorded in the loop's thread, flushed as parts."""

    def __init__(self, task: IngestTask, source: Source, ledger: Ledger, fetcher: Fetcher | None,
                 pool: Executor, progress: Progress) -> None:
        self.task, self.source, self.ledger, self.fetcher, self.pool = task, source, ledger, fetcher, pool
        self.progress = progress
        self.stats = IngestStats()
        self.rows: list[dict] = []
        self.rejects: list[dict] = []
        self.pending_bytes = 0
        self.last_flush = time.monotonic()

    async def decide(self, c: Candidate) -> Outcome:
        if c.lat is not None or c.url is not None or c.member is not None or c.rejected:
            # The source gives the position, so the region is known before any byte is read.
            if c.lat is None or c.lon is None:
                return _reject(self.task, c.image_id, "missing_gps", "the source gives no position")
            placed = placement(self.task, c, c.lat, c.lon)
            if placed is not True:
                return placed  # type: ignore[return-value]
        if c.rejected:
            return _reject(self.task, c.image_id, c.rejected, c.detail, routed=True)
        if c.url is not None:
            try:
                data = await self.download(c)
            except FetchError as exc:
                return _reject(self.task, c.image_id, exc.reason, exc.detail, routed=True)
            c = dataclasses.replace(c, url=None)  # a signed URL never leaves this process
            return await asyncio.get_running_loop().run_in_executor(self.pool, _work, c, data)
        if c.path is None:
            return _reject(self.task, c.image_id, "image_missing", "the source lists no file or URL for it", True)
        return await asyncio.get_running_loop().run_in_executor(self.pool, _work, c, None)

    async def download(self, c: Candidate) -> bytes:
        assert self.fetcher is not None and c.url is not None
        try:
            return await self.fetcher.image(c.url)
        except FetchError as exc:
            if exc.status != 403 or not c.refreshable:
                raise
            fresh = await self.source.refresh_url(self.fetcher, c)  # signed URLs expire: mint a new one
            if fresh is None:
                raise FetchError("expired_url", "HTTP 403 and no fresh URL from the source") from exc
            return await self.fetcher.image(fresh)

    def record(self, outcome: Outcome) -> None:
        self.progress.advance()
        if outcome is None:
            self.stats.skipped_other_region += 1
        elif outcome[0] == "raw":
            self.rows.append(outcome[1])
            self.stats.ingested += 1
            self.stats.bytes_written += len(outcome[1]["image"])
            self.pending_bytes += len(outcome[1]["image"])
        else:
            self.rejects.append(outcome[1])
            self.stats.rejected[outcome[1]["reason"]] += 1
        if (len(self.rows) + len(self.rejects) >= _FLUSH_ROWS or self.pending_bytes >= _FLUSH_BYTES
                or time.monotonic() - self.last_flush >= _FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        self.ledger.write(self.rows, self.rejects)
        self.rows, self.rejects, self.pending_bytes = [], [], 0
        self.last_flush = time.monotonic()

    async def one(self, c: Candidate, slots: asyncio.Semaphore) -> None:
        try:
            self.record(await self.decide(c))
        finally:
            slots.release()

    async def run(self, candidates: AsyncIterator[Candidate], in_flight: int) -> None:
        finished = self.ledger.finished()
        seen: set[str] = set()
        slots = asyncio.Semaphore(in_flight)
        tasks: set[asyncio.Task] = set()
        try:
            async for c in candidates:
                if c.image_id in seen:
                    continue  # listed twice (tiles share edges)
                seen.add(c.image_id)
                self.progress.listed()
                if c.image_id in finished:
                    self.stats.already_done += 1
                    self.progress.advance()
                    continue
                await slots.acquire()
                task = asyncio.create_task(self.one(c, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self.flush()  # whatever finished is kept, also when the run fails or is interrupted


async def ingest_async(task: IngestTask, source: Source, ledger: Ledger, workers: int,
                       progress: Progress) -> IngestStats:
    workers = default_workers(workers)
    async with contextlib.AsyncExitStack() as stack:
        policy = source.fetch_policy
        fetcher = await stack.enter_async_context(Fetcher(policy)) if policy is not None else None
        pool = stack.enter_context(_executor(task, workers))
        run = _Run(task, source, ledger, fetcher, pool, progress)
        in_flight = 4 * workers + (2 * policy.concurrency if policy else 0)
        await run.run(source.candidates(fetcher), in_flight)
        run.stats.retries = fetcher.retries if fetcher else 0
    run.stats.listing_complete = source.complete
    progress.close()
    return run.stats


def ingest(task: IngestTask, source: Source, ledger: Ledger, raw_path: Path, rejects_path: Path,
           workers: int = 0, progress: Progress | None = None) -> IngestStats:
    """Ingest one source for one region, resuming from the ledger, then publish the region's
    raw_images and rejects files (each appears whole, by rename)."""
    progress = progress or Progress(task.source, print)
    stats = asyncio.run(ingest_async(task, source, ledger, workers, progress))
    stats.total_rows, stats.total_rejects = ledger.consolidate(raw_path, rejects_path)
    return stats
