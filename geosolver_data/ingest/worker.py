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
import re
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image

from geosolver_data.geo import invalid_coordinate_reason
from geosolver_data.ingest.archives import OutsideWindow, member_span, read_member, unpack_member, window_reader
from geosolver_data.ingest.candidates import Candidate
from geosolver_data.ingest.exif import read_captured_at, read_gps
from geosolver_data.ingest.fetch import Fetcher, FetchError, FetchPolicy, backoff_s
from geosolver_data.ingest.hub import auth_headers
from geosolver_data.ingest.images import DECODE_ERRORS, ImageRejected, ProcessedImage, open_image, process_opened
from geosolver_data.ingest.outcomes import ELSEWHERE, REFRESH, Outcome, Rejected, Stored
from geosolver_data.parts import IngestUnit
from geosolver_data.schemas import CONTENT_REASONS
from geosolver_data.spec import ImageSpec, Region


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
    content_retries: int = 0  # later runs that try again an image whose bytes were unusable
    unit: IngestUnit | None = None  # the region's part this run takes (sub_partitions); None: all of it


def route(lat: float, lon: float, regions: tuple[Region, ...]) -> str | None:
    """The first region (in spec order) that contains the point."""
    return next((r.name for r in regions if r.contains(lat, lon)), None)


def reject(task: IngestTask, image_id: str, reason: str, detail: str, routed: bool = False,
           remote: bool = False) -> Outcome:
    """The image's reject, or Elsewhere when its region is unknown and another region records strays.
    `remote`: the bytes came from a host, so unusable bytes may come good on a later run."""
    if not (routed or task.owns_strays):
        return ELSEWHERE
    return Rejected(image_id, task.source, task.region, reason, detail[:300], remote)


_URL = re.compile(r"(https?://[^\s?#'\"]*)[?#][^\s'\"]*")


def failure_detail(exc: BaseException) -> str:
    """An unexpected exception, fit for the rejects table: its type and message, with the query of
    any URL in it cut off (a signed URL's query is a credential)."""
    return _URL.sub(r"\1", f"{type(exc).__name__}: {exc}")[:300]


def guarded(task: IngestTask, c: Candidate, handle: Callable[[], Outcome]) -> Outcome:
    """Whatever goes wrong while handling one image becomes that image's reject; the run goes on."""
    try:
        return handle()
    except Exception as exc:  # a bug or a library's failure on this image: recorded, never lost
        return reject(task, c.image_id, "worker_error", failure_detail(exc), routed=c.lat is not None)


def misplaced(task: IngestTask, c: Candidate, lat: float, lon: float) -> Outcome | None:
    """None when the point is this region's to store; otherwise its outcome (a reject, or Elsewhere)."""
    bad = invalid_coordinate_reason(lat, lon)
    if bad:
        return reject(task, c.image_id, "invalid_coordinates", bad)
    region = route(lat, lon, task.regions)
    if region is None:
        return reject(task, c.image_id, "outside_regions", f"lat={lat:.5f}, lon={lon:.5f}")
    return None if region == task.region else ELSEWHERE


def _row(task: IngestTask, c: Candidate, lat: float, lon: float, captured_at: datetime | None,
         done: ProcessedImage) -> Outcome:
    return Stored({
        "image_id": c.image_id, "source": task.source, "lat": lat, "lon": lon, "captured_at": captured_at,
        "sequence_id": c.sequence_id, "license": c.license or task.license or None,
        "creator": c.creator or task.creator or None, "width": done.width, "height": done.height,
        "sha256": done.sha256, "phash": done.phash, "image": done.jpeg,
    })


def ingest_bytes(task: IngestTask, c: Candidate, data: bytes, remote: bool = False) -> Outcome:
    """Bytes of a candidate whose position is known (remote sources, archives)."""
    try:
        done = process_opened(open_image(data, task.image), task.image)
    except ImageRejected as exc:
        return reject(task, c.image_id, exc.reason, exc.detail, routed=True, remote=remote)
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
        data = path.read_bytes()
    except OSError as exc:
        return reject(task, c.image_id, "unreadable_file", exc.strerror or str(exc), routed=c.lat is not None)
    try:
        image = open_image(data, task.image)
    except ImageRejected as exc:
        return reject(task, c.image_id, exc.reason, exc.detail, routed=c.lat is not None)
    if c.lat is not None and c.lon is not None:
        lat, lon, captured_at = c.lat, c.lon, c.captured_at
    else:
        try:
            exif = image.getexif()
            gps = read_gps(exif)
        except DECODE_ERRORS as exc:
            return reject(task, c.image_id, "missing_gps", f"unreadable EXIF: {type(exc).__name__}: {exc}"[:300])
        if gps is None:
            return reject(task, c.image_id, "missing_gps", "no EXIF GPS position")
        elsewhere = misplaced(task, c, *gps)
        if elsewhere is not None:
            return elsewhere
        (lat, lon), captured_at = gps, read_captured_at(exif)
    try:
        done = process_opened(image, task.image)
    except ImageRejected as exc:
        return reject(task, c.image_id, exc.reason, exc.detail, routed=True)
    return _row(task, c, lat, lon, captured_at, done)


_ARCHIVES: dict[str, int] = {}  # archive path -> an open file descriptor, kept for the worker's life


def oversized_member(task: IngestTask, c: Candidate) -> Outcome | None:
    """`too_large`, unread, for a zip member (in a local archive or one on the Hub) whose declared size is
    over the cap; None otherwise."""
    if c.member_at is not None and c.member_at.size > task.image.max_file_bytes:
        return reject(task, c.image_id, "too_large", f"{c.member_at.size} bytes > {task.image.max_file_bytes}",
                      routed=True)
    return None


def ingest_member(task: IngestTask, c: Candidate) -> Outcome:
    """A member of a zip archive (OSV-5M ships its images so), read at the offset the index holds."""
    assert c.path is not None and c.member_at is not None
    if (oversized := oversized_member(task, c)) is not None:
        return oversized
    try:
        fd = _ARCHIVES.get(c.path)
        if fd is None:
            fd = _ARCHIVES[c.path] = os.open(c.path, os.O_RDONLY)
        data = read_member(fd, c.member_at)
    except (OSError, zipfile.BadZipFile, zlib.error) as exc:
        return reject(task, c.image_id, "unreadable_file", f"{c.member}: {exc}"[:200], routed=True)
    return ingest_bytes(task, c, data)


_TASK: IngestTask | None = None
_NET: _Net | None = None


class _Net:
    """A worker's own event loop, in a thread, with its own Fetcher."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.hub_headers: dict[str, str] | None = None  # read when the first archive member is asked for
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.fetcher = Fetcher(policy)
        self._run(self.fetcher.__aenter__())
        self.content_retries = 0  # downloads repeated because the bytes came back unusable
        self.reported = 0

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def get(self, c: Candidate, delay_s: float = 0.0) -> concurrent.futures.Future[bytes]:
        return asyncio.run_coroutine_threadsafe(self._get(c, delay_s), self.loop)

    async def _get(self, c: Candidate, delay_s: float) -> bytes:
        if delay_s:
            await asyncio.sleep(delay_s)
        assert c.url is not None
        return await (self._member(c) if c.member_at else self.fetcher.image(c.url))

    async def _member(self, c: Candidate) -> bytes:
        """A member of a remote zip archive (OSV-5M on the Hub): one range request for its local header
        and bytes (a second when its local extra field is longer than allowed for), checked against
        the central directory's size and CRC (a mismatch is `corrupt_member`)."""
        assert c.url is not None and c.member_at is not None and c.member is not None
        if self.hub_headers is None:
            self.hub_headers = auth_headers()
        start, end = member_span(c.member_at, c.member)
        for _ in range(2):
            window = await self.fetcher.range(c.url, start, end, self.hub_headers)
            try:
                return unpack_member(window_reader(window, start), c.member_at)
            except OutsideWindow as more:
                end = more.end
            except (zipfile.BadZipFile, zlib.error) as exc:
                raise FetchError("corrupt_member", f"{c.member}: {exc}") from exc
        raise FetchError("corrupt_member", f"{c.member}: its local header points past its bytes")

    def new_retries(self) -> int:
        total = self.fetcher.retries + self.content_retries
        new, self.reported = total - self.reported, total
        return new

    def close(self) -> None:
        """Cancel what is still downloading (a failed run leaves some), then close the session."""
        self._run(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _shutdown(self) -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.fetcher.__aexit__(None, None, None)


def init_worker(task: IngestTask, parent: int | None = None) -> None:
    global _TASK
    _TASK = task
    Image.init()
    if parent is not None:  # a worker process: leave with the parent, even one killed with -9
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
        atexit.register(close_worker)


def close_worker() -> None:
    global _NET
    _PENDING.clear()
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
        return reject(task, c.image_id, exc.reason, exc.detail, routed=True, remote=True)
    return ingest_bytes(task, dataclasses.replace(c, url=None), data, remote=True)


def _unusable_bytes(outcome: Outcome) -> bool:
    return isinstance(outcome, Rejected) and outcome.reason in CONTENT_REASONS


Pending = dict[concurrent.futures.Future[bytes], tuple[Candidate, int]]  # download -> (candidate, attempt)
_PENDING: Pending = {}  # this worker's downloads, from every batch it was given, until their outcome is returned


CONTENT_RETRIES_IN_RUN = 2  # downloads again of unusable bytes within one run; later runs: content_retries
HIGH_WATER = 32  # a worker holds up to this many times its connections in downloads before a call waits


def _finished(task: IngestTask, net: _Net, drain: bool) -> Iterator[tuple[Candidate, Outcome]]:
    """Outcomes of this worker's downloads that have finished; a call waits only while the worker
    holds more than HIGH_WATER × its connections (or, draining, until none is left), so slow and
    retrying downloads do not hold up the others. Bytes that came back unusable (HTML with status
    200, cut short, undecodable) are fetched again after the usual backoff, up to
    CONTENT_RETRIES_IN_RUN times: a CDN or a captive portal often serves the image on a later request."""
    assert task.fetch is not None, "a URL candidate needs the source's fetch policy"
    keep = 0 if drain else HIGH_WATER * task.fetch.concurrency
    retries = min(task.fetch.max_retries, CONTENT_RETRIES_IN_RUN)
    while _PENDING:
        ready = [f for f in _PENDING if f.done()]
        if not ready:
            if len(_PENDING) <= keep:
                return
            ready = list(concurrent.futures.wait(_PENDING, return_when=concurrent.futures.FIRST_COMPLETED)[0])
        for future in ready:
            c, attempt = _PENDING.pop(future)
            outcome = guarded(task, c, lambda c=c, future=future: _download_outcome(task, c, future))
            if _unusable_bytes(outcome) and attempt < retries:
                net.content_retries += 1
                _PENDING[net.get(c, backoff_s(task.fetch, attempt))] = (c, attempt + 1)  # type: ignore[arg-type]
                continue
            yield c, outcome


def work_batch(batch: list[Candidate], drain: bool = False) -> tuple[list[tuple[str, Outcome]], int]:
    """Start the batch, and return every outcome this worker has ready, plus the HTTP retries this took.

    Downloads go on between calls, so one slow host answer holds up only its own image (`drain`:
    wait for every download this worker holds).
    Every candidate gets exactly one outcome, whatever fails while handling it."""
    global _NET
    assert _TASK is not None
    task = _TASK
    if _NET is None and any(c.url for c in batch):
        assert task.fetch is not None, "a URL candidate needs the source's fetch policy"
        _NET = _Net(task.fetch)
    results: list[tuple[str, Outcome]] = []
    for c in batch:
        if c.url:  # downloads start first; an oversized member on the Hub is refused without one
            assert _NET is not None
            if (oversized := oversized_member(task, c)) is not None:
                results.append((c.image_id, oversized))
            else:
                _PENDING[_NET.get(c)] = (c, 0)
    for c in batch:  # files and archive members while the downloads run
        if not c.url:
            handle = (lambda c=c: ingest_member(task, c)) if c.member_at else (lambda c=c: ingest_file(task, c))
            results.append((c.image_id, guarded(task, c, handle)))
    if _NET is not None:
        results.extend((c.image_id, outcome) for c, outcome in _finished(task, _NET, drain))
    return results, _NET.new_retries() if _NET is not None else 0
