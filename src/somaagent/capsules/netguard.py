"""The network rules every way out of the gateway shares: host allow-lists and the SSRF guard.

``http_fetch``, remote MCP capsules and the sandbox's egress proxy all ask the same two
questions: is this host (and port) on the list, and does it resolve only to addresses the
operator lets capsules reach (public unicast ones, unless private networks are allowed)?
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import anyio

__all__ = [
    "DEFAULT_PORTS",
    "NetworkRefused",
    "address_allowed",
    "endpoint_allowed",
    "host_allowed",
    "resolve_allowed",
]

DEFAULT_PORTS = (80, 443)
"""The ports an allow-list entry without ``:port`` covers."""


class NetworkRefused(Exception):
    """A destination the rules refuse (not on the list, a private address, unresolvable)."""


def _split(pattern: str) -> tuple[str, int | None]:
    host, _, port = pattern.lower().partition(":")
    return host.rstrip("."), int(port) if port else None


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether ``host`` matches the allow-list (``*.example.com`` covers subdomains only).

    Ports in the entries are ignored here (``http_fetch`` checks hosts only).
    """
    host = host.lower().rstrip(".")
    return any(_host_matches(host, _split(pattern)[0]) for pattern in allowed)


def endpoint_allowed(host: str, port: int, allowed: Iterable[str]) -> bool:
    """Whether ``host:port`` is on the list: an entry with a port covers that port only, one
    without covers :data:`DEFAULT_PORTS` (HTTP and HTTPS)."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        name, only = _split(pattern)
        ports = (only,) if only is not None else DEFAULT_PORTS
        if port in ports and _host_matches(host, name):
            return True
    return False


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Whether an IP address may be reached: only public unicast ones, unless allowed."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        return False
    if allow_private:
        return True
    return ip.is_global and not (
        ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_reserved
    )


async def resolve_allowed(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to, all of them allowed, or :class:`NetworkRefused`.

    The caller connects to an address from this list, never to the name again, so DNS cannot
    answer differently between the check and the connection.
    """
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise NetworkRefused(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    refused = [a for a in addresses if not address_allowed(a, allow_private=allow_private)]
    if refused or not addresses:
        raise NetworkRefused(
            f"{host} resolves to a loopback, link-local or private address "
            f"({refused[0] if refused else 'none'}); the operator has not allowed those "
            "(SOMA_CAPSULES_ALLOW_PRIVATE_NETWORKS)"
        )
    return addresses
