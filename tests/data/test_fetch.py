"""The fetcher against a real HTTP server that misbehaves on demand."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from geosolver_data.ingest.fetch import (
    Fetcher,
    FetchError,
    FetchPolicy,
    environment_configures_http,
    retry_after_seconds,
    where,
)
from geosolver_data.schemas import retry_class
from tests.fakes.imagery import FakeImage, Imagery, jpeg_bytes
from tests.fakes.server import LoopbackServer

POLICY = FetchPolicy(concurrency=4, requests_per_second=0, max_retries=2, timeout_s=1.0, max_bytes=2_000_000,
                     backoff_base_s=0.05, allow_private_addresses=True)  # the hosts are on loopback

EXPECTED = {
    "429_then_ok": None, "500_then_ok": None, "429_forever": "http_429", "500_forever": "http_500",
    "timeout": "timeout", "truncated": "truncated", "html": "not_an_image", "oversize": "too_large",
    "redirect_loop": "too_many_redirects", "not_found": "http_404", "expired": "http_403",
}


@pytest.fixture(scope="module")
def host() -> tuple[Imagery, str]:
    imagery = Imagery()
    imagery.add(FakeImage("ok", 1, 1), *(FakeImage(fault, 1, 1, fault=fault) for fault in EXPECTED))
    app = web.Application()
    imagery.routes(app)
    with LoopbackServer(app) as server:
        yield imagery, server.url


async def _get(url: str, policy: FetchPolicy = POLICY) -> bytes:
    async with Fetcher(policy) as fetcher:
        return await fetcher.image(url)


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_each_fault_ends_in_its_reason_or_succeeds_after_retry(host: tuple[Imagery, str], fault: str) -> None:
    imagery, base = host
    url = imagery.listed_url(base, imagery.images[fault])
    if EXPECTED[fault] is None:
        assert asyncio.run(_get(url))[:3] == b"\xff\xd8\xff"
        assert imagery.hits[fault] == 2  # one failure, one success
        return
    with pytest.raises(FetchError) as info:
        asyncio.run(_get(url))
    assert info.value.reason == EXPECTED[fault]
    assert "sig=" not in str(info.value) and base not in str(info.value)  # no URL in any error


def test_retry_after_pauses_the_host(host: tuple[Imagery, str]) -> None:
    imagery, base = host
    imagery.hits.clear()
    start = time.monotonic()
    asyncio.run(_get(imagery.listed_url(base, imagery.images["429_then_ok"])))
    assert time.monotonic() - start >= 0.95  # Retry-After: 1 was honoured


def test_concurrency_per_host_is_bounded(host: tuple[Imagery, str]) -> None:
    imagery, base = host
    imagery.sleep_s = 0.05

    async def many() -> None:
        async with Fetcher(POLICY) as fetcher:
            await asyncio.gather(*(fetcher.image(imagery.listed_url(base, imagery.images["ok"])) for _ in range(24)))
    try:
        asyncio.run(many())
    finally:
        imagery.sleep_s = 0.0
    assert imagery.peak_in_flight["ok"] == POLICY.concurrency


def test_rate_limit_spaces_requests(host: tuple[Imagery, str]) -> None:
    imagery, base = host
    policy = POLICY.model_copy(update={"requests_per_second": 20.0})

    async def ten() -> None:
        async with Fetcher(policy) as fetcher:
            await asyncio.gather(*(fetcher.image(imagery.listed_url(base, imagery.images["ok"])) for _ in range(10)))
    start = time.monotonic()
    asyncio.run(ten())
    assert time.monotonic() - start >= 9 / 20 * 0.9


def _arrivals(server: LoopbackServer, urls: list[str], policy: FetchPolicy, seen: list) -> dict[str, list[float]]:
    seen.clear()

    async def fetch_all() -> None:
        async with Fetcher(policy) as fetcher:
            await asyncio.gather(*(fetcher.image(u) for u in urls))
    asyncio.run(fetch_all())
    by_host: dict[str, list[float]] = {}
    for host, at in server.call(lambda: list(seen)):
        by_host.setdefault(host, []).append(at)
    return by_host


def _rate(times: list[float]) -> float:
    """Requests per second between the first and the last arrival."""
    return (len(times) - 1) / (max(times) - min(times))


def test_the_rate_budget_is_per_host_with_an_optional_cap_for_the_source() -> None:
    """Six loopback addresses are six hosts to the client. Arrival times are the server's."""
    seen: list[tuple[str, float]] = []
    body = jpeg_bytes(1)

    async def image(request: web.Request) -> web.Response:
        seen.append((request.host.rsplit(":", 1)[0], time.monotonic()))
        return web.Response(body=body, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{n}.jpg", image)
    with LoopbackServer(app, hosts=tuple(f"127.0.0.{i}" for i in range(2, 7))) as server:
        per_host = POLICY.model_copy(update={"requests_per_second": 4.0})
        urls = [f"{base}/{i}.jpg" for i in range(8) for base in server.urls]
        by_host = _arrivals(server, urls, per_host, seen)
        assert sorted(len(t) for t in by_host.values()) == [8] * 6
        assert all(_rate(t) <= 4.0 * 1.25 for t in by_host.values())  # each host within its own budget
        assert _rate([t for ts in by_host.values() for t in ts]) > 2 * 4.0  # not throttled as one host

        capped = per_host.model_copy(update={"source_requests_per_second": 8.0})
        by_host = _arrivals(server, urls[:24], capped, seen)
        assert sum(len(t) for t in by_host.values()) == 24
        assert _rate([t for ts in by_host.values() for t in ts]) <= 8.0 * 1.25  # the source's cap holds
        assert all(_rate(t) <= 4.0 * 1.25 for t in by_host.values() if len(t) > 1)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "ftp://example.org/a.jpg"])
def test_only_http_urls_are_fetched(url: str) -> None:
    with pytest.raises(FetchError) as info:
        asyncio.run(_get(url))
    assert info.value.reason == "unsupported_url" and retry_class(info.value.reason, remote=True) == "final"


def test_helpers() -> None:
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds(None) is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # type: ignore[operator]
    assert where("https://cdn.example/t/1.jpg?sig=abc&exp=1#x") == "https://cdn.example/t/1.jpg"  # no signature


def test_proxies_and_netrc_from_the_environment_are_used_only_when_configured(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real HTTP proxy on loopback (it answers every request itself, with the URL it was asked
    for): with HTTP_PROXY set, a download of a host that does not exist goes through it; netrc
    credentials reach the host. With neither configured, aiohttp's per-request lookups are off."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    assert not environment_configures_http()
    asked: list[tuple[str, str | None]] = []

    async def proxy(request: web.Request) -> web.Response:
        asked.append((str(request.url), request.headers.get("Authorization")))
        return web.Response(body=jpeg_bytes(7), content_type="image/jpeg")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", proxy)
    with LoopbackServer(app) as server:
        monkeypatch.setenv("HTTP_PROXY", server.url)
        assert environment_configures_http()
        body = asyncio.run(_get("http://images.example.invalid/a.jpg"))
        assert body[:3] == b"\xff\xd8\xff"
        assert asked == [("http://images.example.invalid/a.jpg", None)]
        netrc = tmp_path / "netrc"
        netrc.write_text("machine images.example.invalid login user password secret\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        asyncio.run(_get("http://images.example.invalid/b.jpg"))
        assert asked[-1][1] is not None and asked[-1][1].startswith("Basic ")
    monkeypatch.delenv("HTTP_PROXY")
    assert environment_configures_http()  # the netrc file alone turns the lookups on


def _gzip_of_zeros(mib: int) -> bytes:
    """gzip of `mib` MiB of zero bytes, made a MiB at a time (~1 KB per MiB on the wire)."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(mib)) + packer.flush()


def test_a_compressed_body_is_capped_on_its_inflated_size() -> None:
    """1 GiB of zeros as ~1 MB of gzip: refused once 2 MB have been inflated, never inflated whole."""
    import gzip
    import json as json_module
    import resource

    bomb = _gzip_of_zeros(1024)
    assert len(bomb) < POLICY.max_bytes  # under the cap on the wire: only the inflated size can catch it
    small = gzip.compress(json_module.dumps({"data": [1, 2, 3]}).encode())

    async def bomb_handler(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "image/jpeg"})

    async def json_handler(request: web.Request) -> web.Response:
        assert "gzip" in request.headers["Accept-Encoding"]
        return web.Response(body=small, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    async def odd_handler(request: web.Request) -> web.Response:
        return web.Response(body=b"xx", headers={"Content-Encoding": "br", "Content-Type": "image/jpeg"})

    app = web.Application()
    app.router.add_get("/bomb.jpg", bomb_handler)
    app.router.add_get("/api", json_handler)
    app.router.add_get("/odd.jpg", odd_handler)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with LoopbackServer(app) as server:
        with pytest.raises(FetchError) as info:
            asyncio.run(_get(f"{server.url}/bomb.jpg"))
        assert info.value.reason == "too_large" and "inflated" in info.value.detail

        async def api() -> object:
            async with Fetcher(POLICY) as fetcher:
                return await fetcher.json(f"{server.url}/api")

        assert asyncio.run(api()) == {"data": [1, 2, 3]}
        with pytest.raises(FetchError) as info:
            asyncio.run(_get(f"{server.url}/odd.jpg"))
        assert info.value.reason == "unsupported_encoding"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 200, grown_mb  # inflating it whole would have taken over 1 GiB
