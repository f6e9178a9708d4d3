"""A URL list, as img2dataset users have them: CSV or Parquet with url, lat, lon and optional id,
license, creator, captured_at and sequence_id columns. Only http(s) URLs are fetched; anything
else (a local path, file://) is rejected, never opened."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from geosolver_data.ingest.candidates import Candidate
from geosolver_data.ingest.sources.lists import MALFORMED, ROW, as_float, first_of, malformed, parse_time, region_rows
from geosolver_data.spec import Region, SourceSpec

LAT, LON = ("lat", "latitude"), ("lon", "lng", "longitude")
IDS = ("id", "key", "image_id")


def _first(row: dict, *names: str) -> str | None:
    """The first non-empty value among `names` (the row's keys are lower-cased already)."""
    value = next((row[n] for n in names if row.get(n) not in (None, "")), None)
    return None if value is None else str(value)


def url_candidates(src: SourceSpec, region: Region, regions: tuple[Region, ...],
                   owns_strays: bool) -> Iterator[Candidate]:
    """Every row of the list is one candidate: a row that repeats an earlier row's URL (or id) is
    rejected as `duplicate_url` (`duplicate_id`), a row that cannot be parsed as `malformed_row`."""
    for raw in region_rows(Path(src.path).expanduser(), LAT, LON, region, regions, owns_strays,
                           unique=(("url",), IDS)):
        if MALFORMED in raw:
            yield malformed(src.label, raw)
            continue
        yield _candidate(src, raw)


def _candidate(src: SourceSpec, raw: dict) -> Candidate:
    row = {k.lower(): v for k, v in raw.items()}
    url = _first(row, "url")
    given = _first(row, *IDS)
    key = given or hashlib.sha256((url or "").encode()).hexdigest()[:20]
    same_id = first_of(raw, next((c for c in raw if c.lower() in IDS), None))
    same_url = first_of(raw, next((c for c in raw if c.lower() == "url"), None))
    lat, lon = as_float(_first(row, *LAT)), as_float(_first(row, *LON))
    if same_id is not None or same_url is not None:
        # A repeat keeps an id of its own, so it is accounted for beside the row it repeats.
        own = given and same_id is None
        image_id = f"{src.label}:{key}" if own else f"{src.label}:{key}-row-{raw[ROW]}"
        reason, first = ("duplicate_id", same_id) if same_id is not None else ("duplicate_url", same_url)
        return Candidate(image_id, lat, lon, rejected=reason, detail=f"the {reason[10:]} of row {first} again")
    sequence = _first(row, "sequence_id", "sequence")
    candidate = Candidate(
        image_id=f"{src.label}:{key}", lat=lat, lon=lon, url=url,
        captured_at=parse_time(_first(row, "captured_at")),
        sequence_id=f"{src.label}:{sequence}" if sequence else None,
        license=_first(row, "license", "licence"), creator=_first(row, "creator", "author", "artist"),
    )
    if not url:
        candidate = Candidate(candidate.image_id, lat, lon, rejected="no_image_url", detail="empty url")
    return candidate
