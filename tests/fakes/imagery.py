"""A world of fake street-level images, and an image host that serves them with faults on demand.

Faults (per image id, see `FAULTS`): the host answers each as a real misbehaving server would, so
the fetcher's retries, caps and checks are tested against real HTTP. A fault lasts for the image's
first `fault_requests` requests (then the image is served), or for ever when that is None.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import random
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
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
    # What real hosts, CDNs and captive portals also send:
    "garbage_jpeg",  # a JPEG signature, then random bytes
    "garbage_png",  # a PNG signature, then random bytes
    "garbage_webp",  # a RIFF/WEBP header, then random bytes
    "cut_header",  # the first 120 bytes of the JPEG, inside its header, sent as if complete
    "login_page",  # 200 with an HTML login page
    "html_as_jpeg",  # 200 with an HTML page that claims to be image/jpeg
    "reset",  # declares the full length, sends part, then resets the connection
    "trickle",  # sends the body a few bytes at a time, past any sensible timeout
    "slow",  # answers after 0.3 s, then serves the image
    "429_bare",  # 429 without Retry-After
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
    fault_requests: int | None = None  # the fault answers this many requests, then the image; None: always
    size: tuple[int, int] = (320, 240)
    robots_tag: str | None = None  # an X-Robots-Tag header sent with the image (e.g. "noai")


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
    robots_txt: str | None = None  # served at /robots.txt (404 when None)
    robots_status: int = 200  # e.g. 503: robots.txt unavailable

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
        if image.fault_requests is not None and self.hits[image_id] > image.fault_requests:
            fault = ""
        if fault in HOSTILE:
            return await HOSTILE[fault](request, body, random.Random(f"{image_id}:{self.hits[image_id]}"))
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
        headers = {"X-Robots-Tag": image.robots_tag} if image.robots_tag else None
        return canned.get(fault, lambda: web.Response(body=body, content_type="image/jpeg", headers=headers))()

    async def robots(self, request: web.Request) -> web.Response:
        self.hits["/robots.txt"] += 1
        if self.robots_txt is None:
            raise web.HTTPNotFound()
        return web.Response(status=self.robots_status, text=self.robots_txt)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/thumbs/{image_id}.jpg", self.thumb)
        app.router.add_get("/robots.txt", self.robots)

    def servable(self) -> set[str]:
        """Ids whose image the host serves sooner or later (to a client that asks often enough)."""
        def serves(im: FakeImage) -> bool:
            return (not im.fault or im.fault_requests is not None or im.fault.endswith("_then_ok")
                    or im.fault in ("slow", "expired"))
        return {i for i, im in self.images.items() if serves(im)}


def _garbage(magic: bytes, content_type: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    async def answer(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
        return web.Response(body=magic + rng.randbytes(rng.randint(200, 6000)), content_type=content_type)
    return answer


async def _cut_header(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
    return web.Response(body=body[:120], content_type="image/jpeg")


async def _login_page(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
    page = "<!doctype html><html><head><title>Sign in</title></head><body><form action=/login method=post>" \
           "<input name=user><input type=password name=pass></form></body></html>"
    return web.Response(text=page, content_type="text/html")


async def _html_as_jpeg(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
    return web.Response(body=b"<html><body>Service temporarily unavailable</body></html>", content_type="image/jpeg")


async def _reset(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "image/jpeg", "Content-Length": str(len(body))})
    await response.prepare(request)
    await response.write(body[: len(body) // 3])
    sock = request.transport.get_extra_info("socket")  # type: ignore[union-attr]
    if sock is not None:  # SO_LINGER 0: close() sends a TCP reset instead of a clean end
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.transport.abort()  # type: ignore[union-attr]
    return response


async def _trickle(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "image/jpeg", "Content-Length": str(len(body))})
    await response.prepare(request)
    try:
        for start in range(0, len(body), 64):
            await response.write(body[start:start + 64])
            await asyncio.sleep(0.25)  # ~256 B/s: past any timeout the tests use
    except ConnectionResetError:  # the client gave up, as it should
        pass
    return response


async def _slow(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
    await asyncio.sleep(0.3)
    return web.Response(body=body, content_type="image/jpeg")


async def _bare_429(request: web.Request, body: bytes, rng: random.Random) -> web.StreamResponse:
    return web.Response(status=429, text="Too Many Requests")


HOSTILE = {
    "garbage_jpeg": _garbage(b"\xff\xd8\xff\xe0", "image/jpeg"),
    "garbage_png": _garbage(b"\x89PNG\r\n\x1a\n", "image/png"),
    "garbage_webp": _garbage(b"RIFF\x00\x10\x00\x00WEBPVP8 ", "image/webp"),
    "cut_header": _cut_header, "login_page": _login_page, "html_as_jpeg": _html_as_jpeg, "reset": _reset,
    "trickle": _trickle, "slow": _slow, "429_bare": _bare_429,
}
