"""Tiling a bounding box for search APIs that cap the area of a query and the results per reply."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from geosolver_data.ingest.fetch import FetchError

T = TypeVar("T")

BBox = tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat
MIN_TILE_DEG = 1e-4  # about 11 m: a reply still full at this size is taken as it is


def tiles(bbox: BBox, side: float) -> list[BBox]:
    """Cover `bbox` with tiles no larger than side × side degrees, row by row from the south-west."""
    min_lon, min_lat, max_lon, max_lat = bbox
    nx, ny = math.ceil((max_lon - min_lon) / side - 1e-9), math.ceil((max_lat - min_lat) / side - 1e-9)
    xs = [min_lon + (max_lon - min_lon) * i / nx for i in range(nx + 1)]
    ys = [min_lat + (max_lat - min_lat) * j / ny for j in range(ny + 1)]
    return [(round(xs[i], 7), round(ys[j], 7), round(xs[i + 1], 7), round(ys[j + 1], 7))
            for j in range(ny) for i in range(nx)]


def split(tile: BBox) -> list[BBox]:
    """The four quarters of a tile (a reply that came back full is asked again in quarters)."""
    min_lon, min_lat, max_lon, max_lat = tile
    mid_lon, mid_lat = round((min_lon + max_lon) / 2, 7), round((min_lat + max_lat) / 2, 7)
    return [(min_lon, min_lat, mid_lon, mid_lat), (mid_lon, min_lat, max_lon, mid_lat),
            (min_lon, mid_lat, mid_lon, max_lat), (mid_lon, mid_lat, max_lon, max_lat)]


def can_split(tile: BBox) -> bool:
    return min(tile[2] - tile[0], tile[3] - tile[1]) / 2 >= MIN_TILE_DEG


class TileTooBig(Exception):
    """The API refused the tile for its size; it is asked again in quarters."""


class TileWalk:
    """Walks tiles with a few queries in flight, splitting full or refused tiles; counts failures."""

    def __init__(self, query: Callable[[BBox], Awaitable[list[T]]], limit: int, parallel: int = 4) -> None:
        self.query, self.limit, self.parallel = query, limit, parallel
        self.failed: list[tuple[BBox, str]] = []
        self.requests = 0

    async def _one(self, tile: BBox) -> tuple[list[T], list[BBox]]:
        self.requests += 1
        try:
            items = await self.query(tile)
        except TileTooBig as exc:
            if can_split(tile):
                return [], split(tile)
            self.failed.append((tile, f"refused even at {MIN_TILE_DEG} deg: {exc}"))
            return [], []
        except FetchError as exc:
            self.failed.append((tile, f"{exc.reason} {exc.detail}".strip()))
            return [], []
        if len(items) >= self.limit and can_split(tile):
            return [], split(tile)  # a full reply may have dropped results: ask again in quarters
        return items, []

    async def walk(self, bbox: BBox, side: float) -> AsyncIterator[T]:
        queue = tiles(bbox, side)
        while queue:
            batch, queue = queue[: self.parallel], queue[self.parallel:]
            for items, more in await asyncio.gather(*(self._one(t) for t in batch)):
                queue = more + queue
                for item in items:
                    yield item

    def report(self, label: str, what: str, log: Callable[[str], None]) -> bool:
        """Log the tiles left unlisted (a later run lists them again) and the requests made; whether the
        listing was complete."""
        for tile, why in self.failed:
            log(f"{label}: tile {tile} was not listed ({why}); a later run lists it again")
        log(f"{label}: {self.requests} {what} requests, {len(self.failed)} failed")
        return not self.failed
