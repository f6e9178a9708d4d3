"""The ingest engine: one region of one source, from candidates to the region's raw_images.

Sources list candidates (sources/). The main process decides what it can without reading a byte
(already finished, duplicate listing, bad coordinates, another region's point, rejected by the
source) and sends the rest in batches to a process pool, whose workers download, read and process
them (ingest_work). Every outcome is recorded in the ledger. Every candidate ends in exactly one
place: a row of raw_images, a row of the rejects file, or (when it belongs to another region) that
region's run. Candidates whose region cannot be known (no GPS, bad coordinates, unreadable) are
recorded by the partition that owns strays, so none is counted twice or lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from geosolver_data.candidates import Candidate
from geosolver_data.fetch import Fetcher, FetchPolicy
from geosolver_data.ingest_work import (
    REFRESH,
    IngestTask,
    Outcome,
    close_worker,
    init_worker,
    placement,
    reject,
    work_batch,
)
from geosolver_data.ledger import Ledger
from geosolver_data.progress import Progress
from geosolver_data.sources.base import Source

__all__ = ["IngestStats", "IngestTask", "default_workers", "ingest", "ingest_async"]
_FLUSH_ROWS = 256
_FLUSH_BYTES = 64 << 20
_FLUSH_SECONDS = 2.0


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


def default_workers(requested: int = 0) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def worker_share(policy: FetchPolicy, workers: int) -> FetchPolicy:
    """Each worker's part of the source's connections per host and requests per second."""
    return dataclasses.replace(policy, concurrency=max(1, math.ceil(policy.concurrency / workers)),
                               requests_per_second=policy.requests_per_second / workers)


@contextlib.contextmanager
def _executor(task: IngestTask, workers: int) -> Iterator[Executor]:
    if workers <= 1:
        init_worker(task)
        try:
            with ThreadPoolExecutor(1) as pool:
                yield pool
        finally:
            close_worker()
        return
    # spawn, not fork: the caller (a Dagster run) has threads, and fork with threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(task, os.getpid())) as pool:
        yield pool


_NEEDS_WORK = ("work", {})


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

    def precheck(self, c: Candidate) -> Outcome:
        """What can be decided without reading a byte; _NEEDS_WORK otherwise."""
        if c.lat is not None or c.url is not None or c.member is not None or c.rejected:
            # The source gives the position, so the region is known before any byte is read.
            if c.lat is None or c.lon is None:
                return reject(self.task, c.image_id, "missing_gps", "the source gives no position")
            placed = placement(self.task, c, c.lat, c.lon)
            if placed is not True:
                return placed  # type: ignore[return-value]
        if c.rejected:
            return reject(self.task, c.image_id, c.rejected, c.detail, routed=True)
        if c.url is None and c.path is None:
            return reject(self.task, c.image_id, "image_missing", "the source lists no file or URL for it", True)
        return _NEEDS_WORK

    async def work(self, batch: list[Candidate]) -> None:
        loop = asyncio.get_running_loop()
        results, retries = await loop.run_in_executor(self.pool, work_batch, batch)
        self.stats.retries += retries
        by_id = {c.image_id: c for c in batch}
        for image_id, outcome in results:
            if outcome == REFRESH:
                await self.refresh(by_id[image_id])
            else:
                self.record(outcome)

    async def refresh(self, c: Candidate) -> None:
        """A signed URL expired (403): mint a fresh one through the source and try once more."""
        assert self.fetcher is not None
        fresh = await self.source.refresh_url(self.fetcher, c)
        if fresh is None:
            self.record(reject(self.task, c.image_id, "expired_url", "HTTP 403 and no fresh URL from the source",
                                routed=True))
            return
        await self.work([dataclasses.replace(c, url=fresh, refreshable=False)])

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

    async def run(self, candidates: AsyncIterator[Candidate], batch_size: int, in_flight: int) -> None:
        finished = self.ledger.finished()
        seen: set[str] = set()
        slots = asyncio.Semaphore(in_flight)
        tasks: set[asyncio.Task] = set()

        async def dispatch(batch: list[Candidate]) -> None:
            await slots.acquire()
            task = asyncio.create_task(self.work(batch))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), slots.release()))

        try:
            batch: list[Candidate] = []
            async for c in candidates:
                if c.image_id in seen:
                    continue  # listed twice (tiles share edges)
                seen.add(c.image_id)
                self.progress.listed()
                if c.image_id in finished:
                    self.stats.already_done += 1
                    self.progress.advance()
                    continue
                decided = self.precheck(c)
                if decided is not _NEEDS_WORK:
                    self.record(decided)
                    continue
                batch.append(c)
                if len(batch) >= batch_size:
                    await dispatch(batch)
                    batch = []
            if batch:
                await dispatch(batch)
            while tasks:
                await asyncio.gather(*list(tasks))
        finally:
            for task in tasks:
                task.cancel()
            self.flush()  # whatever finished is kept, also when the run fails or is interrupted


async def ingest_async(task: IngestTask, source: Source, ledger: Ledger, workers: int,
                       progress: Progress) -> IngestStats:
    workers = default_workers(workers)
    policy = source.fetch_policy
    if policy is not None:
        task = dataclasses.replace(task, fetch=worker_share(policy, workers))
    async with contextlib.AsyncExitStack() as stack:
        fetcher = await stack.enter_async_context(Fetcher(policy)) if policy is not None else None
        pool = stack.enter_context(_executor(task, workers))
        run = _Run(task, source, ledger, fetcher, pool, progress)
        # Enough candidates per batch to fill a worker's connections twice; one batch queued per worker.
        batch_size = 2 * task.fetch.concurrency if task.fetch else 8
        await run.run(source.candidates(fetcher), batch_size, in_flight=2 * workers)
        run.stats.retries += fetcher.retries if fetcher else 0
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
