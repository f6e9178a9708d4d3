"""An OpenStreetView-5M import: its metadata CSV plus images from a folder, its zip archives, or
the archives where they lie on the Hugging Face Hub.

The CSV (train.csv / test.csv) has id, latitude, longitude, country, sequence, captured_at,
creator_username, …; the images are `<id>.jpg`, loose in a folder tree or inside the dataset's
zip archives (images/train/00.zip …). Ids are only looked up in an index of what is there (an
Arrow table that DuckDB joins to the metadata: archives.py, and hub.py for the Hub's archives), so
no path from the metadata is ever opened. Licence: CC BY-SA 4.0 (the images come from Mapillary).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pyarrow as pa

from geosolver_data.ingest.archives import MemberAt, image_index
from geosolver_data.ingest.candidates import Candidate, FinishedIds
from geosolver_data.ingest.fetch import Fetcher, FetchPolicy
from geosolver_data.ingest.hub import HubError, directory_index, open_split
from geosolver_data.ingest.sources.base import Source, SourceError
from geosolver_data.ingest.sources.lists import (
    DONE,
    MALFORMED,
    ROW,
    as_float,
    first_of,
    malformed,
    parse_time,
    region_rows,
)
from geosolver_data.spec import Region, SourceSpec

LICENSE = "CC BY-SA 4.0"
USED_COLUMNS = ("id", "latitude", "longitude", "sequence", "captured_at", "creator_username")  # of its 25


def osv5m_candidates(src: SourceSpec, region: Region, regions: tuple[Region, ...], owns_strays: bool,
                     finished: set[str] | frozenset[str] = frozenset(), metadata: Path | None = None,
                     lookup: pa.Table | None = None,
                     url_of: Callable[[str], str] | None = None) -> Iterator[Candidate | FinishedIds]:
    """One candidate per metadata row; a malformed row, a row without an id or one that repeats an
    earlier row's id is rejected with its reason (every row accounted for). Rows an earlier run
    finished are listed by id, a batch at a time, found by DuckDB: a refresh of millions of rows
    builds nothing else.

    By default the CSV is `src.path` and the images are looked up under `src.images`; a Hub source
    passes its cached CSV, its archives' index and `url_of` (an archive's path -> its URL)."""
    if lookup is None:
        images = Path(src.images).expanduser()
        if not images.is_dir():
            raise SourceError(f"osv5m images folder {images} does not exist")
        lookup = image_index(images)
    prefix = f"{src.label}:"
    done = pa.array([i[len(prefix):] for i in finished if i.startswith(prefix)], pa.string()) if finished else None
    rows = region_rows(metadata or Path(src.path).expanduser(), ("latitude",), ("longitude",), region, regions,
                       owns_strays, unique=(("id",),), keep=USED_COLUMNS, done=done, lookup=lookup)
    where = f"the {src.split} archives of {src.hub}" if url_of else "the images folder"
    for row in rows:
        if DONE in row:
            yield FinishedIds([prefix + key for key in row[DONE]])
            continue
        if MALFORMED in row:
            yield malformed(src.label, row)
            continue
        key = str(row.get("id") or "").strip()
        repeats = first_of(row, "id" if "id" in row else None)
        lat, lon = as_float(row.get("latitude")), as_float(row.get("longitude"))
        if not key or repeats is not None:
            reason, detail = ("missing_id", "the row has no id") if not key else (
                "duplicate_id", f"the id of row {repeats} again")
            yield Candidate(f"{src.label}:{key}-row-{row[ROW]}", lat, lon, rejected=reason, detail=detail)
            continue
        if row["_path"] is None:
            yield Candidate(f"{src.label}:{key}", lat, lon, rejected="image_missing",
                            detail=f"no {key}.jpg in {where}")
            continue
        sequence = row.get("sequence")
        member_at = None if row["_member"] is None else MemberAt(
            row["_offset"], row["_packed"], row["_size"], row["_method"], row["_crc"])
        on_hub = url_of is not None
        yield Candidate(
            image_id=f"{src.label}:{key}", lat=lat, lon=lon, url=url_of(row["_path"]) if on_hub else None,
            path=None if on_hub else row["_path"], member=row["_member"],
            member_at=member_at, captured_at=parse_time(row.get("captured_at")),
            sequence_id=f"{src.label}:{sequence}" if sequence else None, license=LICENSE,
            creator=row.get("creator_username") or None,
        )


class HubOsv5mSource(Source):
    """OSV-5M read where it lies on the Hub: the commit pinned and the CSV cached when listing starts,
    the archives' central directories read once (hub.py), then one range request per photo of the
    region, made by the workers through the fetcher."""

    def __init__(self, src: SourceSpec, region: Region, regions: tuple[Region, ...], owns_strays: bool,
                 policy: FetchPolicy, cache: Path, log: Callable[[str], None] = print) -> None:
        self.src, self.region, self.regions, self.cache, self.log = src, region, regions, cache, log
        self.owns_strays = owns_strays
        self.fetch_policy = policy

    async def candidates(self, fetcher: Fetcher | None) -> AsyncIterator[Candidate | FinishedIds]:
        assert fetcher is not None, "the engine opens a fetcher for a source with a fetch policy"
        try:
            split = open_split(self.src.hub, self.src.revision, self.src.split)
            self.log(f"{self.src.label}: {self.src.hub} at {self.src.revision} is commit {split.commit[:12]}; "
                     f"{len(split.archives)} archives in images/{self.src.split}")
            index = await directory_index(fetcher, split.archives, self.cache, self.log)
        except HubError as exc:
            raise SourceError(str(exc)) from exc
        urls = {a.path: a.url for a in split.archives}
        for item in osv5m_candidates(self.src, self.region, self.regions, self.owns_strays, self.finished,
                                     metadata=split.metadata, lookup=index, url_of=urls.__getitem__):
            yield item
