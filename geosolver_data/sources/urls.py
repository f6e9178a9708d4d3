"""A URL list, as img2dataset users have them: CSV or Parquet with url, lat, lon and optional id,
license, creator, captured_at and sequence_id columns. Only http(s) URLs are fetched; anything
else (a local path, file://) is rejected, never opened."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from geosolver_data.candidates import Candidate
from geosolver_data.sources.lists import as_float, parse_time, region_rows
from geosolver_data.spec import Region, SourceSpec

LAT, LON = ("lat", "latitude"), ("lon", "lng", "longitude")


def _first(row: dict, *names: str) -> str | None:
    """The first non-empty value among `names` (the row's keys are lower-cased already)."""
    value = next((row[n] for n in names if row.get(n) not in (None, "")), None)
    return None if value is None else str(value)


def url_candidates(src: SourceSpec, region: Region, regions: tuple[Region, ...],
                   owns_strays: bool) -> Iterator[Candidate]:
    for raw in region_rows(Path(src.path).expanduser(), LAT, LON, region, regions, owns_strays):
        row = {k.lower(): v for k, v in raw.items()}
        url = _first(row, "url")
        key = _first(row, "id", "key", "image_id") or hashlib.sha256((url or "").encode()).hexdigest()[:20]
        lat, lon = as_float(_first(row, *LAT)), as_float(_first(row, *LON))
        sequence = _first(row, "sequence_id", "sequence")
        candidate = Candidate(
            image_id=f"{src.label}:{key}", lat=lat, lon=lon, url=url,
            captured_at=parse_time(_first(row, "captured_at")),
            sequence_id=f"{src.label}:{sequence}" if sequence else None,
            license=_first(row, "license", "licence"), creator=_first(row, "creator", "author", "artist"),
        )
        if not url:
            candidate = Candidate(candidate.image_id, lat, lon, rejected="no_image_url", detail="empty url")
        yield candidate
