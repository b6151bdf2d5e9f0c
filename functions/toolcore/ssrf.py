"""Where a tool's HTTP target may point: public addresses only, unless the host is allowlisted.

Which addresses are public is decided by a dated copy of IANA's special-purpose registries
(:mod:`toolcore.address_registry`), never by ``ipaddress.is_global``. The host is parsed in every
encoding a URL parser or ``inet_aton`` accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``,
``[::ffff:127.0.0.1]``, ``[::1]``), names are resolved, and every address the name resolves to must be
public; the executor then connects to the address checked here (never resolving again), so a DNS
answer that changes between check and connect changes nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from toolcore.address_registry import IPAddress, classify

Resolver = Callable[[str, int], list[str]]

_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)


class TargetRefused(Exception):
    """The target must not be called. The message is safe to show (no resolved addresses)."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` denotes literally, in any encoding, or None if it is a name."""
    text = host.strip("[]")
    if "%" in text:  # IPv6 zone id: fe80::1%eth0
        text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 well-known prefix
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def why_refused(address: IPAddress) -> str | None:
    """None if ``address`` may be a tool target, else what it is (see :mod:`toolcore.address_registry`).

    An IPv6 address that carries an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo, IPv4-compatible) is
    judged by that IPv4 address first, then by its own block.
    """
    candidates: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        candidates.extend(_embedded_ipv4(address))
    candidates.append(address)
    for candidate in candidates:
        reason = classify(candidate)
        if reason:
            return reason
    return None


@dataclass(frozen=True)
class Allowlist:
    """Hosts exempt from the address check: ``host`` (any port) or ``host:port`` entries, lower-case."""

    entries: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> Allowlist:
        items = (e.strip().lower() for e in (text or "").split(","))
        return cls(frozenset(e for e in items if e))

    def admits(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return host in self.entries or f"{host}:{port}" in self.entries


def check_target(host: str, port: int, *, allowlist: Allowlist, resolver: Resolver = system_resolver) -> str:
    """The address to connect to for ``host``, or TargetRefused.

    Every address ``host`` resolves to must pass (one public and one private answer is refused: the
    client library could pick either); the first is returned and must be the one connected to.
    """
    allowed = allowlist.admits(host, port)
    literal = literal_address(host)
    if literal is not None:
        addresses: Iterable[str] = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused("the tool's target host does not resolve") from exc
    checked: list[str] = []
    for text in addresses:
        address = literal_address(text)
        if address is None:
            raise TargetRefused("the tool's target host resolved to something that is not an address")
        if address.version == 6 and address.ipv4_mapped is not None and allowed:
            address = address.ipv4_mapped
        reason = None if allowed else why_refused(address)
        if reason:
            raise TargetRefused(f"the tool's target is refused: it resolves to a non-public address: {reason}")
        checked.append(str(address))
    if not checked:
        raise TargetRefused("the tool's target host does not resolve")
    return checked[0]
