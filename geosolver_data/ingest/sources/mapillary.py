"""Mapillary API v4: street-level images in a region (the imagery behind OpenStreetView-5M).

The image search (`GET /images?bbox=…`) has no pagination, caps results per call (2000) and the
box's area (0.01 deg²), so the region is tiled and a tile whose reply is full is asked again in
quarters. Thumbnail URLs are signed and expire: they are fetched as soon as they are listed, a 403
mints a fresh one from the image's own endpoint, and they are never stored or logged. The token
travels only in the Authorization header of API calls, never to the thumbnail hosts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from geosolver_data.ingest.candidates import Candidate
from geosolver_data.ingest.fetch import Fetcher, FetchError, where
from geosolver_data.ingest.sources.base import Source, SourceError, fetch_policy
from geosolver_data.ingest.sources.tiles import BBox, TileTooBig, TileWalk
from geosolver_data.spec import Region, SourceSpec

API_ENV = "MAPILLARY_API_URL"
TOKEN_ENV = "MAPILLARY_ACCESS_TOKEN"
DEFAULT_API = "https://graph.mapillary.com"
MAX_LIMIT = 2000
LICENSE = "CC BY-SA 4.0"


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MapillarySource(Source):
    def __init__(self, src: SourceSpec, region: Region, max_bytes: int, since_ms: int | None = None,
                 log: Callable[[str], None] = print) -> None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise SourceError(f"source {src.label!r}: set {TOKEN_ENV} to a Mapillary client access token "
                              "(https://www.mapillary.com/dashboard/developers)")
        self.src, self.region, self.since_ms, self.log = src, region, since_ms, log
        self.api = os.environ.get(API_ENV, "").strip().rstrip("/") or DEFAULT_API
        self._auth = {"Authorization": f"OAuth {token}"}
        self.limit = min(src.page_limit or MAX_LIMIT, MAX_LIMIT)
        self.thumb_field = f"thumb_{src.thumb_size}_url"
        self.fetch_policy = fetch_policy(src, max_bytes)
        self.complete = True

    async def _call(self, fetcher: Fetcher, path: str, params: dict[str, Any]) -> Any:
        try:
            return await fetcher.json(f"{self.api}/{path}", params=params, headers=self._auth)
        except FetchError as exc:
            if exc.status == 401 or (exc.status == 403 and path == "images"):
                raise SourceError(f"Mapillary refused the access token (HTTP {exc.status}) at {where(self.api)}: "
                                  f"check {TOKEN_ENV}") from exc
            raise

    async def _search(self, fetcher: Fetcher, tile: BBox) -> list[dict]:
        params: dict[str, Any] = {"bbox": ",".join(f"{v:.7f}" for v in tile), "limit": self.limit,
                                  "fields": f"id,geometry,captured_at,compass_angle,sequence,is_pano,creator,"
                                            f"{self.thumb_field}"}
        if self.since_ms is not None:
            params["start_captured_at"] = _iso_ms(self.since_ms)
        try:
            reply = await self._call(fetcher, "images", params)
        except FetchError as exc:
            if exc.status == 400:
                raise TileTooBig(exc.detail) from exc
            raise
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list):
            raise FetchError("bad_reply", "the image search answered without a 'data' list")
        return data

    def _candidate(self, item: dict) -> Candidate:
        image_id = f"{self.src.label}:{item.get('id')}"
        try:
            lon, lat = (float(v) for v in item["geometry"]["coordinates"][:2])
        except (KeyError, TypeError, ValueError, IndexError):
            lat = lon = None
        captured = item.get("captured_at")
        creator = item.get("creator") if isinstance(item.get("creator"), dict) else {}
        sequence = item.get("sequence")
        return Candidate(
            image_id=image_id, lat=lat, lon=lon, url=item.get(self.thumb_field),
            captured_at=datetime.fromtimestamp(captured / 1000, UTC) if isinstance(captured, int | float) else None,
            sequence_id=f"{self.src.label}:{sequence}" if sequence else None, license=LICENSE,
            creator=creator.get("username"), refreshable=True,
        )

    async def candidates(self, fetcher: Fetcher | None) -> AsyncIterator[Candidate]:
        assert fetcher is not None
        walk = TileWalk(lambda tile: self._search(fetcher, tile), self.limit)
        async for item in walk.walk(self.region.bbox, self.src.tile_deg):
            candidate = self._candidate(item)
            if item.get("is_pano") and not self.src.include_panoramas:
                candidate = Candidate(candidate.image_id, candidate.lat, candidate.lon, rejected="panorama",
                                      detail="include_panoramas is off")
            elif not candidate.url:
                candidate = Candidate(candidate.image_id, candidate.lat, candidate.lon, rejected="no_image_url",
                                      detail=f"the search gave no {self.thumb_field}")
            yield candidate
        self.complete = walk.report(self.src.label, "search", self.log)

    async def refresh_url(self, fetcher: Fetcher, candidate: Candidate) -> str | None:
        try:
            reply = await self._call(fetcher, candidate.image_id.split(":", 1)[1], {"fields": self.thumb_field})
        except FetchError:
            return None
        return reply.get(self.thumb_field) if isinstance(reply, dict) else None
