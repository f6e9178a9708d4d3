"""Wikimedia Commons: geotagged files in a region, through the MediaWiki geosearch generator.

`action=query&generator=geosearch&ggsnamespace=6&ggsbbox=…` lists File: pages in a box (at most
500 per call, and the box must not be too big), with `prop=imageinfo|coordinates` giving a
thumbnail URL of the requested width and the licence and author from extmetadata. The region is
tiled like Mapillary's. Wikimedia asks for a descriptive User-Agent: set `user_agent` with a way
to reach you.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from geosolver_data.ingest.candidates import Candidate
from geosolver_data.ingest.fetch import Fetcher, FetchError
from geosolver_data.ingest.sources.base import Source, fetch_policy
from geosolver_data.ingest.sources.tiles import BBox, TileTooBig, TileWalk
from geosolver_data.spec import Region, SourceSpec

DEFAULT_API = "https://commons.wikimedia.org/w/api.php"
MAX_LIMIT = 500
PHOTO_MIMES = frozenset({"image/jpeg", "image/png", "image/webp", "image/tiff"})
_TAGS = re.compile(r"<[^>]+>")


_HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*["']([^"'<>\s]+)["']""", re.IGNORECASE)


def plain(value: str | None) -> str | None:
    """extmetadata values are HTML snippets (an Artist is often a link): keep the text, once, at ingest."""
    if not value:
        return None
    text = " ".join(html.unescape(_TAGS.sub(" ", value)).split())
    return text or None


def credit(value: str | None) -> str | None:
    """An Artist snippet as text, with its link where it gives one: `Jane (https://commons.wikimedia.org/…)`.
    Only an http(s) link is kept (a `javascript:` href is dropped); the result is data, never markup."""
    text = plain(value)
    found = _HREF.search(value or "")
    if text is None or found is None:
        return text
    link = html.unescape(found.group(1))
    link = f"https:{link}" if link.startswith("//") else link
    return f"{text} ({link})" if link.startswith(("https://", "http://")) else text


def parse_when(value: str | None) -> datetime | None:
    """DateTimeOriginal is free text; take it when it starts with an ISO-like date and time."""
    match = re.match(r"(\d{4})[-:](\d{2})[-:](\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?", plain(value) or "")
    if not match:
        return None
    try:
        return datetime(*(int(g or 0) for g in match.groups()), tzinfo=UTC)  # type: ignore[misc]
    except ValueError:
        return None


class CommonsSource(Source):
    def __init__(self, src: SourceSpec, region: Region, max_bytes: int, log: Callable[[str], None] = print) -> None:
        self.src, self.region, self.log = src, region, log
        self.api = src.url or DEFAULT_API
        self.limit = min(src.page_limit or MAX_LIMIT, MAX_LIMIT)
        self.fetch_policy = fetch_policy(src, max_bytes)
        self.complete = True

    def _params(self, tile: BBox) -> dict[str, Any]:
        min_lon, min_lat, max_lon, max_lat = tile
        return {"action": "query", "format": "json", "formatversion": "2", "generator": "geosearch",
                "ggsnamespace": "6", "ggsbbox": f"{max_lat:.7f}|{min_lon:.7f}|{min_lat:.7f}|{max_lon:.7f}",
                "ggslimit": str(self.limit), "prop": "imageinfo|coordinates", "coprimary": "primary",
                "iiprop": "url|mime|extmetadata", "iiurlwidth": str(self.src.thumb_size),
                "iiextmetadatafilter": "LicenseShortName|Artist|DateTimeOriginal"}

    async def _search(self, fetcher: Fetcher, tile: BBox) -> list[dict]:
        params, pages = self._params(tile), {}
        while True:  # imageinfo may come in several replies ("continue"); pages merge by id
            reply = await fetcher.json(self.api, params=params)
            error = reply.get("error") if isinstance(reply, dict) else None
            if error:
                if error.get("code") == "toobig":
                    raise TileTooBig(str(error.get("info", ""))[:200])
                raise FetchError("api_error", f"{error.get('code')}: {str(error.get('info', ''))[:200]}")
            for page in (reply.get("query") or {}).get("pages", []):
                merged = pages.setdefault(page.get("pageid"), {})
                merged.update({k: v for k, v in page.items() if v})
            if "continue" not in reply:
                return list(pages.values())
            params = {**self._params(tile), **reply["continue"]}

    def _candidate(self, page: dict) -> Candidate:
        image_id = f"{self.src.label}:{page.get('pageid')}"
        coords = (page.get("coordinates") or [{}])[0]
        lat, lon = coords.get("lat"), coords.get("lon")
        info = (page.get("imageinfo") or [{}])[0]
        meta = info.get("extmetadata") or {}
        value: Callable[[str], str | None] = lambda key: (meta.get(key) or {}).get("value")  # noqa: E731
        mime = info.get("mime")
        url = info.get("thumburl") or info.get("url")
        if mime not in PHOTO_MIMES:
            return Candidate(image_id, lat, lon, rejected="unsupported_format", detail=f"mime {mime}")
        if not url:
            return Candidate(image_id, lat, lon, rejected="no_image_url", detail="imageinfo has no url")
        return Candidate(image_id, lat, lon, url=url, captured_at=parse_when(value("DateTimeOriginal")),
                         license=plain(value("LicenseShortName")), creator=credit(value("Artist")))

    async def candidates(self, fetcher: Fetcher | None) -> AsyncIterator[Candidate]:
        assert fetcher is not None
        walk = TileWalk(lambda tile: self._search(fetcher, tile), self.limit)
        async for page in walk.walk(self.region.bbox, self.src.tile_deg):
            yield self._candidate(page)
        self.complete = walk.report(self.src.label, "geosearch", self.log)
