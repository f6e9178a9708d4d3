"""Redirects stay where they started, tested without a packet leaving loopback.

Host names resolve through a stub resolver (public.test to a public address, metadata.test to the cloud
metadata address, ...), and the event loop these tests run on refuses to connect anywhere but 127.0.0.0/8:
the one public address the tests stand for is sent to the loopback server, any other non-loopback
address fails the connection. So a broken policy fails a test instead of sending a packet."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import ClassVar

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from geosolver_data.ingest.addresses import kind
from geosolver_data.ingest.fetch import Fetcher, FetchError, FetchPolicy
from tests.fakes.imagery import jpeg_bytes
from tests.fakes.server import LoopbackServer

PUBLIC = "93.184.216.34"  # stands for a public host; the guarded loop sends it to the loopback server
NAMES = {"public.test": PUBLIC, "other-public.test": PUBLIC, "metadata.test": "169.254.169.254",
         "intranet.test": "192.168.1.10", "ten.test": "10.0.0.5", "loop.test": "127.0.0.1",
         "v6meta.test": "fd00:ec2::254"}
POLICY = FetchPolicy(max_retries=0, timeout_s=5.0, requests_per_second=0)


class StubResolver(AbstractResolver):
    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        if host not in NAMES:
            raise OSError(f"stub resolver: no address for {host}")
        address = NAMES[host]
        v6 = ipaddress.ip_address(address).version == 6
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET6 if v6 else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


class LoopbackOnlyLoop(asyncio.SelectorEventLoop):
    """Connects to 127.0.0.0/8 only (PUBLIC goes to the loopback server); anything else is refused and noted."""

    refused: ClassVar[list[tuple]] = []

    async def sock_connect(self, sock: socket.socket, address: tuple) -> None:
        host = address[0]
        if host == PUBLIC:
            return await super().sock_connect(sock, ("127.0.0.1", address[1]))
        if ipaddress.ip_address(host.split("%")[0]) not in ipaddress.ip_network("127.0.0.0/8"):
            LoopbackOnlyLoop.refused.append(address)
            raise ConnectionRefusedError(f"the test loop connects to loopback only, not {host}")
        return await super().sock_connect(sock, address)


def fetch(url: str, policy: FetchPolicy = POLICY, headers: dict | None = None) -> bytes:
    async def go() -> bytes:
        async with Fetcher(policy, resolver=StubResolver()) as fetcher:
            if headers:
                body, _ = await fetcher._get(url, None, headers, policy.max_bytes)
                return body
            return await fetcher.image(url)

    with asyncio.Runner(loop_factory=LoopbackOnlyLoop) as runner:
        return runner.run(go())


@pytest.fixture(scope="module")
def server() -> tuple[str, list[dict]]:
    seen: list[dict] = []

    async def hop(request: web.Request) -> web.Response:
        seen.append({"host": request.host, "path": request.path, "auth": request.headers.get("Authorization")})
        raise web.HTTPFound(request.query["to"])

    async def image(request: web.Request) -> web.Response:
        seen.append({"host": request.host, "path": request.path, "auth": request.headers.get("Authorization")})
        return web.Response(body=jpeg_bytes(1), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/hop", hop)
    app.router.add_get("/ok.jpg", image)
    with LoopbackServer(app) as running:
        yield running.url.rsplit(":", 1)[1].rstrip("/"), seen


@pytest.mark.parametrize("target", ["http://metadata.test/latest/meta-data/", "http://169.254.169.254/latest/",
                                    "http://[fd00:ec2::254]/latest/", "http://v6meta.test/",
                                    "http://intranet.test/", "http://10.0.0.5/", "http://ten.test/",
                                    "http://loop.test:{port}/ok.jpg", "http://127.0.0.1:{port}/ok.jpg"])
def test_a_redirect_from_a_public_host_to_a_private_one_is_refused(server, target: str) -> None:
    port, _ = server
    LoopbackOnlyLoop.refused.clear()
    with pytest.raises(FetchError) as info:
        fetch(f"http://public.test:{port}/hop?to={target.format(port=port)}")
    assert info.value.reason == "unsafe_redirect", info.value
    assert LoopbackOnlyLoop.refused == []  # refused by the policy, before any connection was tried


def test_a_public_redirect_is_followed_and_a_token_stays_with_its_origin(server) -> None:
    port, seen = server
    seen.clear()
    body = fetch(f"http://public.test:{port}/hop?to=http://other-public.test:{port}/ok.jpg",
                 headers={"Authorization": "OAuth secret"})
    assert body[:3] == b"\xff\xd8\xff"
    assert [(s["path"], s["auth"]) for s in seen] == [("/hop", "OAuth secret"), ("/ok.jpg", None)]


def test_a_listed_private_address_needs_the_sources_permission(server) -> None:
    port, _ = server
    for url in (f"http://127.0.0.1:{port}/ok.jpg", f"http://loop.test:{port}/ok.jpg"):
        with pytest.raises(FetchError) as info:
            fetch(url)
        assert info.value.reason == "private_address"
        allowed = FetchPolicy(max_retries=0, timeout_s=5.0, requests_per_second=0, allow_private_addresses=True)
        assert fetch(url, allowed)[:3] == b"\xff\xd8\xff"
    # Allowed private addresses never include link-local ones: the metadata endpoint stays out of reach.
    allowed = FetchPolicy(max_retries=0, timeout_s=5.0, requests_per_second=0, allow_private_addresses=True)
    with pytest.raises(FetchError) as info:
        fetch(f"http://127.0.0.1:{port}/hop?to=http://metadata.test/", allowed)
    assert info.value.reason == "unsafe_redirect"
    assert LoopbackOnlyLoop.refused == []


def test_address_kinds() -> None:
    assert kind("8.8.8.8") is None and kind("2606:4700::1111") is None
    assert kind("169.254.169.254") == "metadata" and kind("169.254.1.1") == "link-local"
    assert kind("127.0.0.1") == "loopback" and kind("::1") == "loopback" and kind("::ffff:10.0.0.1") == "private"
    assert kind("10.1.2.3") == kind("172.16.0.1") == kind("192.168.0.1") == kind("fc00::1") == "private"
    assert kind("0.0.0.0") == "unspecified" and kind("224.0.0.1") == "multicast"
