"""A fake Wikimedia Commons API (`/w/api.php`, generator=geosearch with imageinfo and coordinates)
and its thumbnail host, on loopback. Boxes wider than `max_span` (0.5°) answer the `toobig` error; imageinfo
for more than 5 pages is split over replies with `continue`, as the real API does."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.imagery import FakeImage, Imagery

INFO_PER_REPLY = 5
MAX_SPAN = 0.5


class FakeCommons:
    def __init__(self, imagery: Imagery, max_span: float = MAX_SPAN) -> None:
        self.imagery, self.max_span = imagery, max_span
        self.calls: list[dict] = []
        self.app = web.Application()
        self.app.router.add_get("/w/api.php", self.api)
        imagery.routes(self.app)

    def _page(self, request: web.Request, image: FakeImage, with_info: bool) -> dict:
        page = {"pageid": int(image.id), "ns": 6, "title": f"File:Street {image.id}.jpg",
                "coordinates": [{"lat": image.lat, "lon": image.lon, "primary": True, "globe": "earth"}]}
        if with_info:
            base = f"{request.scheme}://{request.host}"
            page["imageinfo"] = [{
                "thumburl": self.imagery.listed_url(base, image), "thumbwidth": 320, "thumbheight": 240,
                "url": f"{base}/originals/{image.id}.jpg", "mime": "image/svg+xml" if image.is_pano else "image/jpeg",
                "extmetadata": {
                    "LicenseShortName": {"value": "CC BY-SA 4.0", "source": "commons-desc-page"},
                    "Artist": {"value": f'<a href="//commons.wikimedia.org/wiki/User:{image.creator}">'
                                        f"{image.creator}</a>", "source": "commons-desc-page"},
                    "DateTimeOriginal": {"value": "2019-05-01 12:30:00", "source": "commons-desc-page"},
                },
            }]
        return page

    async def api(self, request: web.Request) -> web.Response:
        q = request.query
        self.calls.append({"query": dict(q), "headers": dict(request.headers)})
        if q.get("action") != "query" or q.get("generator") != "geosearch" or q.get("ggsnamespace") != "6":
            return web.json_response({"error": {"code": "badparams", "info": "unsupported in this fake"}})
        top, left, bottom, right = (float(v) for v in q["ggsbbox"].split("|"))
        if top - bottom > self.max_span or right - left > self.max_span:
            return web.json_response({"error": {"code": "toobig", "info": "Bounding box is too big"}})
        limit = min(int(q.get("ggslimit", 10)), 500)
        found = [img for _, img in sorted(self.imagery.images.items(), key=lambda kv: int(kv[0]))
                 if bottom <= img.lat <= top and left <= img.lon <= right][:limit]
        start = int(q.get("iicontinue", 0))
        end = start + INFO_PER_REPLY
        pages = [self._page(request, img, start <= i < end) for i, img in enumerate(found)]
        reply: dict = {"batchcomplete": end >= len(found), "query": {"pages": pages}}
        if end < len(found):
            reply["continue"] = {"iicontinue": str(end), "continue": "||"}
        return web.json_response(reply)
