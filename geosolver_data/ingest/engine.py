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
import itertools
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import pyarrow as pa

from geosolver_data.errors import GeosolverError
from geosolver_data.ingest.accounting import Accounting, AccountingError, account, save_listing
from geosolver_data.ingest.candidates import Candidate, FinishedIds
from geosolver_data.ingest.fetch import Fetcher, FetchPolicy
from geosolver_data.ingest.ledger import Ledger, Resume
from geosolver_data.ingest.outcomes import REFRESH, Outcome, Rejected, Stored
from geosolver_data.ingest.progress import Progress
from geosolver_data.ingest.sources.base import Source
from geosolver_data.ingest.worker import IngestTask, close_worker, init_worker, misplaced, reject, work_batch
from geosolver_data.schemas import is_final
from geosolver_data.store.home import RegionFiles

__all__ = ["IngestStats", "IngestTask", "WorkerCrashed", "default_workers", "ingest", "ingest_async"]
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
    retries: int = 0  # HTTP requests repeated after 429/5xx/timeouts, and downloads of unusable bytes
    listing_complete: bool = True  # every listing request was answered (else the watermark stays)
    total_rows: int = 0  # rows in the region's raw_images after this run
    total_rejects: Counter[str] = field(default_factory=Counter)
    total_to_retry: int = 0  # rejects in the region's table that a later run tries again
    accounting: Accounting | None = None  # where every candidate listed by this run ended

    @property
    def candidates(self) -> int:
        """Candidates this run decided (ingested or rejected)."""
        return self.ingested + sum(self.rejected.values())


class WorkerCrashed(GeosolverError, RuntimeError):
    """A worker process died (killed, out of memory, a crash in a decoder): the run fails, keeping
    everything finished so far in the ledger for the rerun."""


def default_workers(requested: int = 0) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def worker_share(policy: FetchPolicy, workers: int) -> FetchPolicy:
    """Each worker's part of the source's connections per host and requests per second (per host, and
    the source's cap across hosts)."""
    return policy.model_copy(update={"concurrency": max(1, math.ceil(policy.concurrency / workers)),
                                     "requests_per_second": policy.requests_per_second / workers,
                                     "source_requests_per_second": policy.source_requests_per_second / workers})


@contextlib.contextmanager
def _executors(task: IngestTask, workers: int) -> Iterator[list[Executor]]:
    """One executor per worker, so a batch can be sent to the worker that holds the fewest: a worker
    keeps slow downloads going across batches, and the last call to each drains what it holds."""
    if workers <= 1:
        init_worker(task)
        try:
            with ThreadPoolExecutor(1) as pool:
                yield [pool]
        finally:
            close_worker()
        return
    # spawn, not fork: the caller (a Dagster run) has threads, and fork with threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(ProcessPoolExecutor(1, mp_context=ctx, initializer=init_worker,
                                                       initargs=(task, os.getpid()))) for _ in range(workers)]


class _Run:
    """The state of one ingest run: outcomes are recorded in the loop's thread, flushed as parts.

    Batches go to the worker with the fewest calls and images outstanding. A call returns what its
    worker has finished, which may include images of its earlier batches, while slow downloads go on
    in the worker; once the listing ends, one draining call per worker collects the rest.
    """

    def __init__(self, task: IngestTask, source: Source, ledger: Ledger, fetcher: Fetcher | None,
                 pools: list[Executor], progress: Progress) -> None:
        self.task, self.source, self.ledger, self.fetcher, self.pools = task, source, ledger, fetcher, pools
        self.progress = progress
        self.stats = IngestStats()
        self.rows: list[dict] = []
        self.rejects: list[dict] = []
        self.pending_bytes = 0
        self.last_flush = time.monotonic()
        self.resume = Resume()
        self.listed: list[str] = []  # every distinct id listed, in order
        self.elsewhere: set[str] = set()  # listed, but another region's to record
        # Sent to each worker and not yet answered: id -> (candidate, number of the sending).
        self.holding: list[dict[str, tuple[Candidate, int]]] = [{} for _ in pools]
        self.sendings = itertools.count()
        self.calls = [0] * len(pools)  # calls in flight per worker
        self.tasks: set[asyncio.Task] = set()
        self.slots = asyncio.Semaphore(2 * len(pools))  # a call running and one queued per worker
        self.failure: BaseException | None = None  # the first call that failed as a whole

    def precheck(self, c: Candidate) -> Outcome | None:
        """What can be decided without reading a byte; None when a worker must read it."""
        if c.rejected and c.lat is None:  # a row with no position the source could not use (malformed)
            return reject(self.task, c.image_id, c.rejected, c.detail)
        if c.lat is not None or c.url is not None or c.member is not None or c.rejected:
            # The source gives the position, so the region is known before any byte is read.
            if c.lat is None or c.lon is None:
                return reject(self.task, c.image_id, "missing_gps", "the source gives no position")
            elsewhere = misplaced(self.task, c, c.lat, c.lon)
            if elsewhere is not None:
                return elsewhere
        if c.rejected:
            return reject(self.task, c.image_id, c.rejected, c.detail, routed=True)
        if c.url is None and c.path is None:
            return reject(self.task, c.image_id, "image_missing", "the source lists no file or URL for it", True)
        return None

    def pick(self) -> int:
        return min(range(len(self.pools)), key=lambda w: (self.calls[w], len(self.holding[w])))

    async def call(self, worker: int, batch: list[Candidate], drain: bool = False) -> None:
        """One call to one worker: send the batch, record whatever it has finished."""
        loop = asyncio.get_running_loop()
        holding = self.holding[worker]
        holding.update((c.image_id, (c, next(self.sendings))) for c in batch)
        before = dict(holding) if drain else {}
        self.calls[worker] += 1
        try:
            results, retries = await loop.run_in_executor(self.pools[worker], work_batch, batch, drain)
        except BrokenProcessPool as exc:
            shown = ", ".join(list(holding)[:10]) + (" ..." if len(holding) > 10 else "")
            raise WorkerCrashed(f"{self.task.region}/{self.task.source}: a worker process died while it held "
                                f"{len(holding)} image(s) ({shown}); what was finished is kept in the ledger and "
                                "a rerun resumes from there") from exc
        finally:
            self.calls[worker] -= 1
        self.stats.retries += retries
        # Off the worker's books at once, before anything below waits: a draining call that runs while
        # a refresh waits on the API must not count these as held and never answered.
        answered = [(holding.pop(image_id)[0], outcome) for image_id, outcome in results]
        for c, outcome in answered:
            if outcome == REFRESH:
                await self.refresh(c)
            else:
                self.record(c.image_id, outcome)
        # A drained worker holds nothing: what it was sent before and never answered for is lost. The
        # accounting names it and fails the run. (A sending since, such as a refreshed URL, is kept.)
        for image_id, (_, sending) in before.items():
            if holding.get(image_id, (None, -1))[1] == sending:
                del holding[image_id]

    async def refresh(self, c: Candidate) -> None:
        """A signed URL expired (403): mint a fresh one through the source and try once more."""
        assert self.fetcher is not None
        fresh = await self.source.refresh_url(self.fetcher, c)
        if fresh is None:
            self.record(c.image_id, reject(self.task, c.image_id, "expired_url",
                                           "HTTP 403 and no fresh URL from the source", routed=True, remote=True))
            return
        await self.call(self.pick(), [dataclasses.replace(c, url=fresh, refreshable=False)])

    def record(self, image_id: str, outcome: Outcome) -> None:
        self.progress.advance()
        if isinstance(outcome, Stored):
            self.rows.append(outcome.row)
            self.stats.ingested += 1
            self.stats.bytes_written += len(outcome.row["image"])
            self.pending_bytes += len(outcome.row["image"])
        elif isinstance(outcome, Rejected):
            attempts = self.resume.attempts.get(image_id, 0) + 1
            final = is_final(outcome.reason, outcome.remote, attempts, self.task.content_retries)
            self.rejects.append({**outcome.row(), "attempts": attempts, "final": final})
            self.stats.rejected[outcome.reason] += 1
        else:  # Elsewhere (a Refresh is handled before it is recorded)
            self.stats.skipped_other_region += 1
            self.elsewhere.add(image_id)
        if (len(self.rows) + len(self.rejects) >= _FLUSH_ROWS or self.pending_bytes >= _FLUSH_BYTES
                or time.monotonic() - self.last_flush >= _FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        self.ledger.write(self.rows, self.rejects)
        self.rows, self.rejects, self.pending_bytes = [], [], 0
        self.last_flush = time.monotonic()

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def take(self, c: Candidate, seen: set[str]) -> bool:
        """Count a listed candidate and decide what can be decided at once; True when it needs a worker."""
        if c.image_id in seen:
            return False  # listed twice (tiles share edges)
        seen.add(c.image_id)
        if self.task.unit is not None and not self.task.unit.owns(c.image_id):
            return False  # another part's: listed, counted and decided by that part's run
        self.listed.append(c.image_id)
        self.progress.listed()
        if c.image_id in self.resume.finished:
            self.stats.already_done += 1
            self.progress.advance()
            return False
        decided = self.precheck(c)
        if decided is not None:
            self.record(c.image_id, decided)
            return False
        return True

    def take_finished(self, ids: list[str], seen: set[str]) -> None:
        """Count ids an earlier run finished, listed in bulk by the source (its contract: each is in
        `finished`), as `take` counts them one by one."""
        fresh = [i for i in ids if i not in seen]
        seen.update(fresh)
        unit = self.task.unit
        if unit is not None and unit.parts > 1:
            fresh = [i for i in fresh if unit.owns(i)]
        self.listed.extend(fresh)
        self.stats.already_done += len(fresh)
        self.progress.listed(len(fresh))
        self.progress.advance(len(fresh))

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.slots.release()
        # Every call's exception is retrieved here, so none can vanish with its task.
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    async def dispatch(self, batch: list[Candidate], worker: int | None = None, drain: bool = False) -> None:
        await self.slots.acquire()
        self._check()
        task = asyncio.create_task(self.call(self.pick() if worker is None else worker, batch, drain))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def drain(self) -> None:
        """Once every candidate is sent: a draining call to each worker that still holds images."""
        while self.tasks or any(self.holding):
            for worker, holding in enumerate(self.holding):
                if holding and not self.calls[worker]:
                    await self.dispatch([], worker, drain=True)
            if self.tasks:
                await asyncio.wait(list(self.tasks), return_when=asyncio.FIRST_COMPLETED)
            self._check()

    async def run(self, candidates: AsyncIterator[Candidate | FinishedIds], batch_size: int) -> None:
        self.resume = self.ledger.resume()
        self.source.finished = self.resume.finished  # before the listing starts (candidates is lazy)
        seen: set[str] = set()
        try:
            batch: list[Candidate] = []
            async for c in candidates:
                self._check()
                if isinstance(c, FinishedIds):
                    self.take_finished(c.ids, seen)
                elif self.take(c, seen):
                    batch.append(c)
                if len(batch) >= batch_size:
                    await self.dispatch(batch)
                    batch = []
            self.progress.listing_finished()
            if batch:
                await self.dispatch(batch)
            await self.drain()
        finally:
            for task in self.tasks:
                task.cancel()
            self.flush()  # whatever finished is kept, also when the run fails or is interrupted

    def ours(self) -> pa.Array:
        """The listed ids this region records (every other one is another region's)."""
        return pa.array([i for i in self.listed if i not in self.elsewhere], pa.string())


async def ingest_async(task: IngestTask, source: Source, ledger: Ledger, workers: int,
                       progress: Progress) -> tuple[IngestStats, pa.Array]:
    """The run itself; returns its figures and the ids it listed for this region."""
    workers = default_workers(workers)
    policy = source.fetch_policy
    if policy is not None:
        task = dataclasses.replace(task, fetch=worker_share(policy, workers))
    async with contextlib.AsyncExitStack() as stack:
        fetcher = await stack.enter_async_context(Fetcher(policy)) if policy is not None else None
        pools = stack.enter_context(_executors(task, workers))
        run = _Run(task, source, ledger, fetcher, pools, progress)
        # Enough candidates per batch to fill a worker's connections twice; one batch queued per worker.
        batch_size = 2 * task.fetch.concurrency if task.fetch else 8
        await run.run(source.candidates(fetcher), batch_size)
        run.stats.retries += fetcher.retries if fetcher else 0
    run.stats.listing_complete = source.complete
    progress.close()
    return run.stats, run.ours()


def ingest(task: IngestTask, source: Source, ledger: Ledger, files: RegionFiles, workers: int = 0,
           progress: Progress | None = None) -> IngestStats:
    """Ingest one source for one region, resuming from the ledger, then publish the region's
    raw_images and rejects files (each appears whole, by rename) and account for every candidate
    listed: AccountingError when one is in neither file (or in both)."""
    progress = progress or Progress(task.source, print)
    ledger.check_base(files.raw, progress.log, files.rejects)
    stats, listed = asyncio.run(ingest_async(task, source, ledger, workers, progress))
    stats.total_rows, stats.total_rejects, stats.total_to_retry = ledger.consolidate(files.raw, files.rejects)
    save_listing(listed, files.listing)
    stats.accounting = account(listed, files.raw, files.rejects)
    if not stats.accounting.holds:
        raise AccountingError(f"{task.region}/{task.source}: not every listed image is accounted for: "
                              + "; ".join(stats.accounting.problems()))
    return stats
