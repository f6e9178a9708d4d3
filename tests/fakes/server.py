"""A real aiohttp server on 127.0.0.1, run in a background thread for the length of a test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class LoopbackServer:
    """`with LoopbackServer(app) as server: server.url` — binds an ephemeral port on 127.0.0.1; with
    `hosts`, also on other loopback addresses (127.0.0.2, ...: distinct hosts to a client), same port,
    one URL each in `server.urls`."""

    def __init__(self, app: web.Application, hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.hosts = hosts
        self.url = ""
        self.urls: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.urls = [self.url]
        for host in self.hosts:
            await web.TCPSite(self._runner, host, port).start()
            self.urls.append(f"http://{host}:{port}")

    def call(self, fn: Callable[[], object]) -> object:
        """Run `fn` on the server's loop (to read or change its state safely)."""
        async def wrapped() -> object:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(timeout=30)

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
