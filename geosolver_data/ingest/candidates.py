"""A candidate image: what a source knows about one image before its bytes are read.

Sources only list candidates; reading the bytes (from a URL, a file or a zip member) and the image
work are the ingest engine's job, so every source gets the same retries, checks and accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from geosolver_data.ingest.archives import MemberAt


@dataclass(frozen=True)
class Candidate:
    image_id: str  # source-qualified, e.g. "mapillary:123"
    lat: float | None = None  # None: read from the image's EXIF GPS (local photos)
    lon: float | None = None
    url: str | None = None  # fetched over http(s); may be signed, so it is never stored
    path: str | None = None  # a local file, or the zip archive holding `member`
    member: str | None = None
    member_at: MemberAt | None = None  # where the member's bytes lie in the archive (read without zipfile)
    captured_at: datetime | None = None
    sequence_id: str | None = None
    license: str | None = None
    creator: str | None = None
    refreshable: bool = False  # the source can mint a fresh URL when this one has expired (HTTP 403)
    rejected: str | None = None  # the source already knows it cannot be used (e.g. "panorama")
    detail: str = ""


@dataclass(frozen=True)
class FinishedIds:
    """Ids an earlier run finished, listed at once: a source with millions of rows (OSV-5M) lists
    what a refresh skips without building a Candidate, or a Python row, for each."""

    ids: list[str]
