"""Where fetch_page may connect: the allow-list, the address checks, and requests sent to the checked address."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from agents.errors import FetchRefused

if TYPE_CHECKING:
    import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "OVERSEER_FETCH_ALLOW"
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
# Checked in this order, so an address is named by its most telling trait (240/4 is private and reserved).
_TRAITS = (
    ("unspecified", "is_unspecified"), ("loopback", "is_loopback"), ("link-local", "is_link_local"),
    ("multicast", "is_multicast"), ("reserved", "is_reserved"), ("private", "is_private"),
)


@dataclass(frozen=True)
class FetchPolicy:
    """The hosts and networks fetch_page may reach although they are not public (none by default)."""

    allow: tuple[str, ...] = ()
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)
    _networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hosts, networks = set(), []
        for entry in self.allow:
            network = _network(entry)
            if network is not None:
                networks.append(network)
            elif _HOST_NAME.match(_host_key(entry)):
                hosts.add(_host_key(entry))
            else:
                raise ValueError(f"{entry!r} is neither a host name nor an address or CIDR network")
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def parse(cls, text: str) -> FetchPolicy:
        """A policy from comma-separated hosts and CIDRs, e.g. "127.0.0.1,10.0.0.0/8,intranet.local"."""
        return cls(allow=tuple(part.strip() for part in text.split(",") if part.strip()))

    def check(self, host: str, addresses: list[Address]) -> None:
        """Raise FetchRefused unless the host is allowed by name or every address is public or allowed."""
        if _host_key(host) in self._hosts:
            return
        for address in addresses:
            problem = address_problem(address)
            if problem is None or self._allows(address):
                continue
            named = _host_key(host) != str(address)
            where = f"{host} (it resolves to {address})" if named else host
            entry = f"{host} or {address}" if named else str(address)
            raise FetchRefused(
                f"fetch_page refused {where}: {address} is not a public address ({problem}); "
                f"to allow it, add {entry} (or a CIDR holding it) to {ALLOW_SETTING}"
            )

    def _allows(self, address: Address) -> bool:
        candidates = [address, *_embedded_ipv4(address)]
        return any(a in network for a in candidates for network in self._networks if a.version == network.version)


def address_problem(address: Address) -> str | None:
    """Why fetch_page may not reach this address unless allowed ("loopback", "private", ...), or None if public."""
    for candidate in (*_embedded_ipv4(address), address):
        for trait, attribute in _TRAITS:
            if getattr(candidate, attribute):
                return trait
        if not candidate.is_global:
            return "non-public"
    return None


def _embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, 6to4), which is where it leads."""
    if isinstance(address, ipaddress.IPv6Address):
        return [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    return []


def _network(entry: str) -> Network | None:
    try:
        return ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return None


def _host_key(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


async def resolve(host: str, port: int) -> list[Address]:
    """Every address a host name resolves to, in the resolver's order (tests replace this seam)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@contextlib.asynccontextmanager
async def get_checked(url: httpx.URL, policy: FetchPolicy, *, headers: dict[str, str], timeout: float) -> AsyncIterator[httpx.Response]:
    """GET url (streaming, no redirects followed) from an address that passed the policy: resolved once,
    checked, then connected to by address (Host header and TLS name stay the URL's), so a second DNS
    answer cannot slip past the check."""
    import httpx

    host = url.raw_host.decode("ascii")
    literal = _literal(host)
    addresses = [literal] if literal else await resolve(host, url.port or (443 if url.scheme == "https" else 80))
    if not addresses:
        raise httpx.ConnectError(f"{host} resolves to no address")
    policy.check(host, addresses)
    # A client per hop: a pooled connection verified for one name must not carry a request for another.
    # No environment proxies or .netrc: the request goes to the checked address with nothing added.
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        response = await _send_to_any(client, url, addresses, headers, {} if literal else {"sni_hostname": host})
        try:
            yield response
        finally:
            await response.aclose()


async def _send_to_any(
    client: httpx.AsyncClient, url: httpx.URL, addresses: list[Address], headers: dict[str, str], extensions: dict[str, str]
) -> httpx.Response:
    import httpx

    last: httpx.ConnectError | None = None
    for address in addresses:  # e.g. localhost: ::1 may refuse where 127.0.0.1 answers
        request = client.build_request(
            "GET", url.copy_with(host=str(address)), headers={**headers, "Host": url.netloc.decode("ascii")},
            extensions=extensions,
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last = exc
    assert last is not None
    raise last
