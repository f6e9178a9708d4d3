"""The HTTP side of ingest: polite, bounded, retrying downloads with aiohttp.

One `Fetcher` per source. Connections per host are bounded by aiohttp's connector, requests per
second by a token bucket shared by the source, and a 429 with Retry-After pauses every request to
that host, not just the one that got it. Failures become `FetchError`s with a short reason for the
rejects table; no URL (signed URLs carry credentials in their query) and no header ever goes into
an error, a log line or a file.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from geosolver_data import __version__
from geosolver_data.ingest.addresses import PolicyResolver, UnsafeAddress, check_literal, unsafe_cause
from geosolver_data.ingest.images import looks_like_image
from geosolver_data.spec import HttpSettings

DEFAULT_USER_AGENT = f"Geosolver/{__version__} (street-level geolocation dataset builder; python-aiohttp)"
ROBOTS_CAP = 512_000  # RFC 9309: a crawler parses at least the first 500 KiB of a robots.txt
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MOVED_TTL_S = 600.0  # how long a range URL's redirect target is used (the Hub's signed URLs live an hour)


class FetchError(Exception):
    """A request that failed for good (after retries where they apply)."""

    def __init__(self, reason: str, detail: str = "", status: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.status = status


class FetchPolicy(HttpSettings):
    """The source's HTTP settings (spec.HttpSettings: per-host connections and rate, retries, timeout,
    user agent, private addresses) plus the fetcher's own limits, which the spec does not set."""

    max_bytes: int = 50_000_000
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0  # a longer Retry-After gives up on the image (retried next run)
    max_redirects: int = 3

    @property
    def agent(self) -> str:
        return self.user_agent or DEFAULT_USER_AGENT

    @property
    def robots_token(self) -> str:
        """The product token robots.txt and X-Robots-Tag rules name us by: `Geosolver`, or the first word of
        a custom user agent (`MyLab-crawler/1.0 (mailto:…)` is `MyLab-crawler`)."""
        return self.agent.split()[0].split("/")[0]


def opted_out(values: list[str], refused: tuple[str, ...], token: str) -> str | None:
    """The first refused directive among X-Robots-Tag header values that applies to `token`, or None.

    A value is `directive, directive` for every crawler or `agent: directive, ...` for one (as
    img2dataset reads it: a value whose prefix names another agent, such as `unavailable_after: <date>`,
    does not apply)."""
    wanted = {r.lower() for r in refused}
    for value in values:
        agent, colon, rest = value.partition(":")
        if colon and agent.strip().lower() != token.lower():
            continue
        directives = (rest if colon else value).split(",")
        found = next((d.strip().lower() for d in directives if d.strip().lower() in wanted), None)
        if found:
            return found
    return None


def backoff_s(policy: FetchPolicy, attempt: int) -> float:
    """Exponential backoff with full jitter: spreads the retries of many clients evenly."""
    return random.uniform(0, min(policy.backoff_max_s, policy.backoff_base_s * 2 ** attempt))


def where(url: str) -> str:
    """A URL fit for a log line: scheme, host and path; never the query, which may be a signature."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{parts.path}"


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HostGate:
    """Requests per second per host, optionally a cap for the whole source across its hosts, a pause
    per host after a 429 with Retry-After, and at most `concurrency` requests per host at once.

    Politeness is owed to each host: a URL list spread over a thousand hosts is not throttled like
    one API. The per-source cap is for an API that counts requests per token, whatever host answers.

    The concurrency bound is a semaphore taken before a request starts, not only aiohttp's connector
    limit: a request queued in the connector is already on its timeout's clock, so behind a few slow
    answers it would time out without ever reaching the host.
    """

    def __init__(self, per_host: float, concurrency: int, per_source: float = 0.0) -> None:
        self.host_interval = 1.0 / per_host if per_host > 0 else 0.0
        self.source_interval = 1.0 / per_source if per_source > 0 else 0.0
        self.next_host_slot: dict[str, float] = {}
        self.next_source_slot = 0.0
        self.paused_until: dict[str, float] = {}
        self.concurrency = concurrency
        self.slots: dict[str, asyncio.Semaphore] = {}

    def slot(self, host: str) -> asyncio.Semaphore:
        return self.slots.setdefault(host, asyncio.Semaphore(self.concurrency))

    async def wait(self, host: str) -> None:
        while (delay := self.paused_until.get(host, 0.0) - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        # The earliest slot both budgets allow, reserved before sleeping (no await in between), so
        # concurrent requests queue behind each other instead of all waking at once.
        slot = max(now, self.next_host_slot.get(host, 0.0) if self.host_interval else now,
                   self.next_source_slot if self.source_interval else now)
        if self.host_interval:
            self.next_host_slot[host] = slot + self.host_interval
        if self.source_interval:
            self.next_source_slot = slot + self.source_interval
        if slot > now:
            await asyncio.sleep(slot - now)

    def pause(self, host: str, seconds: float) -> None:
        self.paused_until[host] = max(self.paused_until.get(host, 0.0), time.monotonic() + seconds)


def environment_configures_http() -> bool:
    """Whether proxies (HTTP_PROXY, HTTPS_PROXY, ...) or a netrc file are configured.

    aiohttp's `trust_env` reads both for every request, on two trips to a thread pool each: a tenth
    of ingest's CPU against a fast host. So it is turned on only when there is something to read.
    """
    if urllib.request.getproxies():
        return True
    named = os.environ.get("NETRC")
    if named:
        return Path(named).is_file()
    return any((Path.home() / name).is_file() for name in (".netrc", "_netrc"))


class Fetcher:
    """`async with Fetcher(policy) as f: data = await f.image(url)`.

    Proxies from the environment and netrc credentials are used as aiohttp's `trust_env` uses them.
    """

    def __init__(self, policy: FetchPolicy, resolver: AbstractResolver | None = None) -> None:
        """`resolver`: what names resolve with before the address policy filters them (default: aiohttp's)."""
        self.policy = policy
        self.base_resolver = resolver
        self.gate = HostGate(policy.requests_per_second, policy.concurrency, policy.source_requests_per_second)
        self.retries = 0  # requests repeated after a retryable failure, for the run's figures
        self._robots: dict[str, asyncio.Future[RobotFileParser]] = {}  # origin -> its rules, fetched once
        # a range URL -> where it redirected (a signed URL: a credential, kept in memory only) and until when
        self._moved: dict[str, tuple[yarl.URL, float]] = {}
        self._resolving: dict[str, asyncio.Future[None]] = {}  # a range URL -> its first request, in flight
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        resolver = PolicyResolver(self.policy.allow_private_addresses, self.base_resolver)  # needs a running loop
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.policy.concurrency, ttl_dns_cache=300,
                                         resolver=resolver)
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s, sock_connect=min(10.0, self.policy.timeout_s))
        # auto_decompress off: a compressed body is inflated here, chunk by chunk, against the cap
        # (aiohttp would inflate it whole first: 1 MB of gzip on the wire became 1 GiB in memory).
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              trust_env=environment_configures_http(), auto_decompress=False,
                                              headers={"User-Agent": self.policy.agent,
                                                       "Accept-Encoding": "gzip, deflate"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def image(self, url: str) -> bytes:
        """The bytes of an image, checked for size, declared type and magic bytes; refused (`opted_out`,
        `robots_disallowed`) where the host says we may not use it."""
        if self.policy.robots_txt:
            await self._robots_allow(url)
        body, content_type = await self._get(url, None, None, self.policy.max_bytes, opt_out=self.policy.opt_out)
        if content_type and not content_type.startswith(("image/", "application/octet-stream")):
            raise FetchError("not_an_image", f"content-type {content_type[:60]}")
        if not looks_like_image(body[:16]):
            raise FetchError("not_an_image", f"{len(body)} bytes that are not JPEG, PNG or WebP")
        return body

    async def range(self, url: str, start: int, end: int, headers: dict[str, str] | None = None) -> bytes:
        """Bytes [start, end) of the file at `url` (fewer when the file ends first), through the same
        politeness, retries and redirects as an image; a short or misplaced 206 answer is retried.
        `headers` (a token) go to the URL's own origin only, the Range header to every hop.

        Where the URL redirected (the Hub's `resolve` to a signed URL on its file host), later ranges of
        it go straight there for MOVED_TTL_S: one archive read photo by photo costs the redirecting
        host (whose requests are rate-limited) one request, not one per photo. A refused signed URL
        (expired) is dropped and the URL asked again. Ranges of a URL being resolved wait for that."""
        resolving = self._resolving.get(url)
        if resolving is not None:
            await asyncio.wait([resolving])
        moved = self._moved.get(url)
        if moved is not None and moved[1] > time.monotonic():
            try:
                return (await self._get(str(moved[0]), None, None, end - start, span=(start, end)))[0]
            except FetchError as exc:
                if exc.status not in (401, 403, 404, 410):
                    raise
                self._moved.pop(url, None)
        first = url not in self._resolving
        if first:
            self._resolving[url] = asyncio.get_running_loop().create_future()
        try:
            body, _ = await self._get(url, None, headers, end - start, span=(start, end))
        finally:
            if first:
                self._resolving.pop(url).set_result(None)
        return body

    async def json(self, url: str, params: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Any:
        body, _ = await self._get(url, params, headers, 64_000_000)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise FetchError("bad_json", f"{where(url)} answered with something that is not JSON") from exc

    async def _robots_allow(self, url: str) -> None:
        """FetchError `robots_disallowed` when the host's robots.txt disallows `url` for our token. Each
        host's robots.txt is fetched once (concurrent photos of one host wait for the one fetch)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            self._robots[origin] = asyncio.ensure_future(self._robots_rules(origin))
        rules = await asyncio.shield(self._robots[origin])
        if not rules.can_fetch(self.policy.robots_token, url):
            raise FetchError("robots_disallowed", f"{origin}/robots.txt disallows {parts.path[:120]}")

    async def _robots_rules(self, origin: str) -> RobotFileParser:
        """A host's robots.txt rules (RFC 9309): a 4xx allows everything; a 5xx or no answer after the
        retries holds every photo of the host back for a later run (`robots_unavailable`)."""
        rules = RobotFileParser()
        try:
            body, _ = await self._get(f"{origin}/robots.txt", None, None, ROBOTS_CAP)
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:  # none published
                rules.parse([])
                return rules
            raise FetchError("robots_unavailable", f"{origin}/robots.txt: {exc.reason} {exc.detail}".strip()) from exc
        rules.parse(body.decode("utf-8", errors="replace").splitlines())
        return rules

    async def _get(self, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None,
                   cap: int, opt_out: tuple[str, ...] = (), span: tuple[int, int] | None = None) -> tuple[bytes, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("unsupported_url", f"only http(s) URLs are fetched, got scheme {parts.scheme!r}")
        host = parts.hostname
        for attempt in range(self.policy.max_retries + 1):
            try:
                async with self.gate.slot(host):
                    await self.gate.wait(host)
                    return await self._once(url, params, headers, cap, opt_out, span)
            except _Retry as retry:
                error, after = retry.error, retry.after
            if attempt == self.policy.max_retries:
                raise error
            self.retries += 1
            if after is None:  # else Retry-After has paused the host in the gate
                await asyncio.sleep(backoff_s(self.policy, attempt))
        raise AssertionError("unreachable")

    async def _once(self, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None,
                    cap: int, opt_out: tuple[str, ...], span: tuple[int, int] | None = None) -> tuple[bytes, str]:
        """One request, its redirects followed here: each hop's address is checked before connecting; an
        answer whose X-Robots-Tag holds an `opt_out` directive is refused before its body is read."""
        assert self._session is not None, "use Fetcher as an async context manager"
        target = yarl.URL(url)
        origin = target.origin()
        # A range is asked of every hop, uncompressed (a gzipped range has no byte positions to check).
        ranged = {"Range": f"bytes={span[0]}-{span[1] - 1}", "Accept-Encoding": "identity"} if span else {}
        for hop in range(self.policy.max_redirects + 1):
            try:
                check_literal(target.host or "", self.policy.allow_private_addresses)
                # A token in the headers goes to the listed origin only, never to where it redirects.
                async with self._session.get(target, params=params if hop == 0 else None,
                                             headers={**(headers or {} if target.origin() == origin else {}),
                                                      **ranged} or None,
                                             allow_redirects=False) as resp:
                    if resp.status in REDIRECT_STATUS and "Location" in resp.headers:
                        target = _redirect_target(resp)
                        continue
                    if span is not None:
                        body = await self._read_range(resp, span)
                        if hop:
                            self._moved[url] = (target, time.monotonic() + MOVED_TTL_S)
                        return body, ""
                    return await self._read_whole(resp, cap, opt_out)
            except TimeoutError as exc:
                raise _Retry(FetchError("timeout", f"no complete answer in {self.policy.timeout_s:g} s")) from exc
            except aiohttp.ClientPayloadError as exc:
                raise _Retry(FetchError("truncated", "the body ended before its declared length")) from exc
            except aiohttp.InvalidURL as exc:
                raise FetchError("unsupported_url", type(exc).__name__) from exc
            except (aiohttp.ClientError, UnsafeAddress) as exc:
                unsafe = unsafe_cause(exc)
                if unsafe is not None:  # final: the address will not change on a retry
                    raise FetchError("unsafe_redirect" if hop else "private_address", str(unsafe)) from exc
                # Resets, refused connections and whatever else aiohttp raises for one request: the
                # type's name only, as some of these carry the URL (and a signed URL's query) in their text.
                raise _Retry(FetchError("connection_error", type(exc).__name__)) from exc
        raise FetchError("too_many_redirects", f"more than {self.policy.max_redirects}")

    async def _read_whole(self, resp: aiohttp.ClientResponse, cap: int, opt_out: tuple[str, ...]) -> tuple[bytes, str]:
        """The body of a 200 answer and its type; refused when the host opts the file out."""
        if resp.status != 200:
            raise self._status_error(resp)
        refused = opted_out(resp.headers.getall("X-Robots-Tag", []), opt_out, self.policy.robots_token)
        if refused:
            raise FetchError("opted_out", f"X-Robots-Tag: {refused}")
        return await _read_capped(resp, cap), resp.headers.get("Content-Type", "").lower()

    async def _read_range(self, resp: aiohttp.ClientResponse, span: tuple[int, int]) -> bytes:
        """The body of a 206 answer to bytes [start, end): it must start where asked and hold what its
        Content-Range says (a short body is retried as `truncated`); a 200 means the host ignored Range."""
        if resp.status == 200:
            raise FetchError("range_ignored", "the host answered a range request with the whole file")
        if resp.status != 206:
            raise self._status_error(resp)
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != span[0] or not int(match[1]) <= int(match[2]) < span[1]:
            raise _Retry(FetchError("bad_range", "a 206 answer for other bytes than those asked"))
        want = int(match[2]) - int(match[1]) + 1
        body = await _read_capped(resp, span[1] - span[0])
        if len(body) != want:
            raise _Retry(FetchError("truncated", f"{len(body)} of the {want} bytes of a range"))
        return body

    def _status_error(self, resp: aiohttp.ClientResponse) -> Exception:
        error = FetchError(f"http_{resp.status}", resp.reason or "", status=resp.status)
        if resp.status not in RETRYABLE_STATUS:
            return error
        after = retry_after_seconds(resp.headers.get("Retry-After"))
        if after is not None:
            if after > self.policy.max_retry_after_s:
                cap_s = self.policy.max_retry_after_s
                return FetchError(error.reason, f"Retry-After {after:.0f} s is over the {cap_s:g} s cap", resp.status)
            self.gate.pause(resp.url.host or "", after)
        return _Retry(error, after)


REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


def _redirect_target(resp: aiohttp.ClientResponse) -> yarl.URL:
    """Where a redirect points, resolved against the request's URL; only http(s) is followed."""
    try:
        target = resp.url.join(yarl.URL(resp.headers["Location"]))
    except ValueError as exc:
        raise FetchError("unsupported_url", "a redirect to an unparseable Location") from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise FetchError("unsupported_url", f"a redirect to scheme {target.scheme!r}")
    return target


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _inflater(encoding: str) -> zlib._Decompress | None:
    """A streaming decompressor for a Content-Encoding; None for an uncompressed body."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, told apart by the header
    raise FetchError("unsupported_encoding", f"Content-Encoding {encoding[:40]}")


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, refusing more than `cap` bytes: by the declared length, else while reading; a compressed
    body is refused as soon as its inflated bytes pass the cap (never inflated whole first)."""
    if resp.content_length is not None and resp.content_length > cap:
        raise FetchError("too_large", f"{resp.content_length} bytes > cap {cap}")
    inflate = _inflater(resp.headers.get("Content-Encoding", "").strip().lower())
    body = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, cap + 1 - len(body))  # at most one byte past the cap
            except zlib.error as exc:
                raise FetchError("undecodable", f"a corrupt {resp.headers.get('Content-Encoding')} body") from exc
        body += chunk
        if len(body) > cap:
            compressed = " (inflated)" if inflate is not None else ""
            raise FetchError("too_large", f"more than {cap} bytes{compressed}")
    if inflate is not None:
        body += inflate.flush()
        if len(body) > cap or inflate.unconsumed_tail:
            raise FetchError("too_large", f"more than {cap} bytes (inflated)")
    return bytes(body)


class _Retry(Exception):
    """A retryable failure; `after` is the server's Retry-After (already applied to the host gate)."""

    def __init__(self, error: FetchError, after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.after = after
