"""A fake Mapillary Graph API v4 (image search, image entity) plus its thumbnail CDN, on loopback.

Same request and response shapes as graph.mapillary.com: `GET /images?bbox=&fields=&limit=` with
`Authorization: OAuth <token>`, GeoJSON `[lon, lat]` geometry, `captured_at` in epoch ms, a creator
object, signed thumbnail URLs that expire. It enforces the real limits (2000 results per call,
0.01 deg² per box) and answers 401 for a bad token.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from tests.fakes.imagery import FakeImage, Imagery

MAX_LIMIT = 2000
MAX_AREA = 0.01


class FakeMapillary:
    def __init__(self, imagery: Imagery, token: str, search_faults: int = 0, max_area: float = MAX_AREA) -> None:
        self.imagery, self.token, self.max_area = imagery, token, max_area
        self.search_faults = search_faults  # the first N searches answer 500
        self.searches: list[dict] = []
        self.app = web.Application()
        self.app.router.add_get("/images", self.search)
        imagery.routes(self.app)
        self.app.router.add_get("/{image_id}", self.entity)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"OAuth {self.token}"

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "OAuthException", "code": 190}},
                                 status=status)

    def _fields(self, request: web.Request, image: FakeImage) -> dict:
        base = f"{request.scheme}://{request.host}"
        full = {"id": image.id, "geometry": {"type": "Point", "coordinates": [image.lon, image.lat]},
                "captured_at": image.captured_at_ms, "compass_angle": 90.0, "sequence": image.sequence,
                "is_pano": image.is_pano, "creator": {"id": "1", "username": image.creator}}
        for size in (256, 1024, 2048):
            full[f"thumb_{size}_url"] = self.imagery.listed_url(base, image)
        wanted = request.query.get("fields", "id").split(",")
        return {k: full[k] for k in wanted if k in full}

    async def search(self, request: web.Request) -> web.Response:
        self.searches.append({"query": dict(request.query), "headers": dict(request.headers)})
        if not self._authorised(request):
            return self._error(401, "Invalid OAuth 2.0 Access Token")
        if self.search_faults > 0:
            self.search_faults -= 1
            return web.json_response({"error": {"message": "Please reduce the amount of data"}}, status=500)
        try:
            min_lon, min_lat, max_lon, max_lat = (float(v) for v in request.query["bbox"].split(","))
        except (KeyError, ValueError):
            return self._error(400, "bbox is required")
        if (max_lon - min_lon) * (max_lat - min_lat) > self.max_area + 1e-9:
            return web.json_response({"error": {"message": "Bbox area is too large", "code": 100}}, status=400)
        limit = min(int(request.query.get("limit", MAX_LIMIT)), MAX_LIMIT)
        since = request.query.get("start_captured_at")
        since_ms = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp() * 1000 if since else None
        found = [img for _, img in sorted(self.imagery.images.items())
                 if min_lon <= img.lon <= max_lon and min_lat <= img.lat <= max_lat
                 and (since_ms is None or img.captured_at_ms >= since_ms)]
        return web.json_response({"data": [self._fields(request, img) for img in found[:limit]]})

    async def entity(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, "Invalid OAuth 2.0 Access Token")
        image = self.imagery.images.get(request.match_info["image_id"])
        if image is None:
            raise web.HTTPNotFound()
        base = f"{request.scheme}://{request.host}"
        fresh = base + self.imagery.sign(image.id)
        fields = request.query.get("fields", "id").split(",")
        return web.json_response({"id": image.id, **{f: fresh for f in fields if f.startswith("thumb_")}})
