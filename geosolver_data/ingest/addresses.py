"""Where the fetcher may connect: public addresses, and private ones only when the source allows them.

Every hop is checked on the address it resolves to, before connecting: a listed URL's host, and each
redirect's (the fetcher follows redirects itself, so a literal IP in a Location header is checked
too). Link-local addresses, the cloud metadata endpoint among them (169.254.169.254, fd00:ec2::254),
are never fetched; loopback and private-range addresses (127/8, 10/8, 172.16/12, 192.168/16, fc00::/7)
only with `allow_private_addresses: true` (a source on this machine or a LAN, and the tests' loopback
servers).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


class UnsafeAddress(OSError):
    """A host that resolves only to addresses the policy forbids."""

    def __init__(self, host: str, kinds: list[str]) -> None:
        super().__init__(f"{host} resolves only to {', '.join(sorted(set(kinds)))} addresses")
        self.host, self.kinds = host, kinds


def kind(address: str) -> str | None:
    """None for a public address; else what it is: metadata, link-local, loopback, private, ..."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip in METADATA:
        return "metadata"
    for name in ("link_local", "loopback", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if ip.is_private or not ip.is_global:
        return "private"
    return None


def allowed(address: str, allow_private: bool) -> bool:
    found = kind(address)
    return found is None or (allow_private and found in ("loopback", "private"))


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_literal(host: str, allow_private: bool) -> None:
    """A URL whose host is an IP address: the resolver is never asked, so it is checked here."""
    address = host.strip("[]")
    if is_ip(address) and not allowed(address, allow_private):
        raise UnsafeAddress(address, [kind(address) or "public"])


class PolicyResolver(AbstractResolver):
    """Resolves with `base` (aiohttp's default), then keeps only the addresses the policy allows."""

    def __init__(self, allow_private: bool, base: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self.base = base or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        found = await self.base.resolve(host, port, family)
        kept = [r for r in found if allowed(r["host"], self.allow_private)]
        if not kept:
            raise UnsafeAddress(host, [kind(r["host"]) or "public" for r in found])
        return kept

    async def close(self) -> None:
        await self.base.close()


def unsafe_cause(exc: BaseException) -> UnsafeAddress | None:
    """The UnsafeAddress behind an aiohttp connection error (its os_error, or a cause), if that is what it was."""
    todo: list[Any] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, UnsafeAddress):
            return current
        seen.add(id(current))
        todo += [getattr(current, "os_error", None), current.__cause__, current.__context__]
    return None
