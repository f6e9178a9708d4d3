"""A world of fake street-level images, and an image host that serves them with faults on demand.

Faults (per image id, see `FAULTS`): the host answers each as a real misbehaving server would, so
the fetcher's retries, caps and checks are tested against real HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from aiohttp import web
from PIL import Image

FAULTS = (
    "429_then_ok",  # 429 with Retry-After: 1 on the first request, then the image
    "429_forever",  # always 429 with Retry-After: 1
    "500_then_ok",  # 500 on the first request, then the image
    "500_forever",
    "timeout",  # never answers in time
    "truncated",  # declares more bytes than it sends
    "corrupt",  # a JPEG header followed by garbage
    "html",  # an HTML error page with status 200
    "oversize",  # a body larger than the fetcher's cap
    "bomb",  # a small PNG that declares 30000x30000 pixels
    "expired",  # the listed URL's signature has expired (403); a fresh one works
    "redirect_loop",
    "not_found",
)


def jpeg_bytes(seed: int, size: tuple[int, int] = (320, 240), quality: int = 85) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(1, size[1] // 16), max(1, size[0] // 16), 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(out, "JPEG", quality=quality)
    return out.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring a huge image, with a tiny compressed body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@dataclass
class FakeImage:
    id: str
    lat: float
    lon: float
    captured_at_ms: int = 1_600_000_000_000
    sequence: str = "seq0"
    creator: str = "alice"
    is_pano: bool = False
    fault: str | None = None
    size: tuple[int, int] = (320, 240)


@dataclass
class Imagery:
    """The images, the host's secret for signing URLs, and what the host saw."""

    images: dict[str, FakeImage] = field(default_factory=dict)
    secret: bytes = b"fake-cdn-secret"
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[dict] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)  # per image id, now
    peak_in_flight: Counter[str] = field(default_factory=Counter)  # per image id, the most at once
    sleep_s: float = 0.0  # added to every image response (to make a run slow enough to kill)

    def add(self, *images: FakeImage) -> None:
        for image in images:
            self.images[image.id] = image

    def sign(self, image_id: str, ttl_s: float = 3600) -> str:
        exp = int(time.time() + ttl_s)
        sig = hmac.new(self.secret, f"{image_id}:{exp}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"/thumbs/{image_id}.jpg?exp={exp}&sig={sig}"

    def listed_url(self, base: str, image: FakeImage) -> str:
        return base + self.sign(image.id, ttl_s=-60 if image.fault == "expired" else 3600)

    def valid(self, image_id: str, exp: str, sig: str) -> bool:
        want = hmac.new(self.secret, f"{image_id}:{exp}".encode(), hashlib.sha256).hexdigest()[:32]
        return hmac.compare_digest(want, sig) and exp.isdigit() and int(exp) > time.time()

    async def thumb(self, request: web.Request) -> web.StreamResponse:
        image_id = request.match_info["image_id"]
        self.requests.append({"path": request.path, "headers": dict(request.headers)})
        self.in_flight[image_id] += 1
        self.peak_in_flight[image_id] = max(self.peak_in_flight[image_id], self.in_flight[image_id])
        try:
            if self.sleep_s:
                await asyncio.sleep(self.sleep_s)
            return await self._thumb(request, image_id)
        finally:
            self.in_flight[image_id] -= 1

    async def _thumb(self, request: web.Request, image_id: str) -> web.StreamResponse:
        image = self.images.get(image_id)
        if image is None:
            raise web.HTTPNotFound()
        self.hits[image_id] += 1
        if not self.valid(image_id, request.query.get("exp", ""), request.query.get("sig", "")):
            return web.Response(status=403, text="URL signature expired")
        body = jpeg_bytes(int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16), image.size)
        fault = image.fault or ""
        if fault.endswith("_then_ok"):
            fault = fault.replace("_then_ok", "_forever") if self.hits[image_id] == 1 else ""
        if fault == "timeout":
            await asyncio.sleep(3)  # longer than the tests' client timeout
        if fault == "redirect_loop":
            raise web.HTTPFound(request.path_qs)
        if fault == "truncated":
            response = web.StreamResponse(headers={"Content-Type": "image/jpeg", "Content-Length": str(len(body))})
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            request.transport.close()  # type: ignore[union-attr]
            return response
        canned = {
            "429_forever": lambda: web.Response(status=429, headers={"Retry-After": "1"}, text="slow down"),
            "500_forever": lambda: web.Response(status=500, text="oops"),
            "not_found": lambda: web.Response(status=404, text="gone"),
            "html": lambda: web.Response(text="<html><body>Rate limited</body></html>", content_type="text/html"),
            "corrupt": lambda: web.Response(body=body[:200] + bytes(range(256)) * 20, content_type="image/jpeg"),
            "oversize": lambda: web.Response(body=body + b"\0" * (3 << 20), content_type="image/jpeg"),
            "bomb": lambda: web.Response(body=bomb_png(), content_type="image/png"),
        }
        return canned.get(fault, lambda: web.Response(body=body, content_type="image/jpeg"))()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/thumbs/{image_id}.jpg", self.thumb)
