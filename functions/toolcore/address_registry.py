"""Which IP addresses a tool target may resolve to: a dated copy of IANA's registries, committed here.

Not downloaded at run time (a Lambda must not depend on iana.org answering, and a table that changes
under a running service cannot be reviewed), and not ``ipaddress.is_global``, whose answers differ
across Python 3.11-3.13 (``64:ff9b:1::1``, ``2002::1``, ``2001:1::1``, ``3fff::1``, ``fec0::1``...).

Sources, transcribed by hand; REVIEWED is when this copy was last compared with them:
- IANA IPv4 Special-Purpose Address Registry  https://www.iana.org/assignments/iana-ipv4-special-registry/
- IANA IPv6 Special-Purpose Address Registry  https://www.iana.org/assignments/iana-ipv6-special-registry/
  (edition "Last Updated 2024-10-22", plus RFC 9780's dummy prefix)
- IANA IPv4 Address Space Registry (224.0.0.0/4 multicast, which the special-purpose registry omits)
- IANA IPv6 Address Space Registry: only 2000::/3 is Global Unicast; everything else is reserved,
  unique-local, link-local, the deprecated site-local fec0::/10 (RFC 3879) or multicast.

The rule (``classify``): the longest matching special-purpose block decides; an address inside one is
refused unless IANA marks that block "Globally Reachable: True" (e.g. 192.0.0.9/32 inside the refused
192.0.0.0/24). IPv4 outside every block is public. IPv6 must also lie in 2000::/3 — or in a globally
reachable special block outside it (64:ff9b::/96, NAT64). Addresses that carry an IPv4 address
(IPv4-mapped, NAT64, 6to4, Teredo, IPv4-compatible) are judged by that IPv4 address as well
(``ssrf.why_refused``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REVIEWED = "2026-12-01"


@dataclass(frozen=True)
class Block:
    network: IPNetwork
    name: str  # IANA's name
    reference: str
    globally_reachable: bool | None  # IANA's column; None where IANA says N/A (deprecated blocks)
    kind: str  # what a refusal message calls it (never the address itself)


def _b(cidr: str, name: str, reference: str, reachable: bool | None, kind: str) -> Block:
    return Block(ipaddress.ip_network(cidr), name, reference, reachable, kind)


# fmt: off
IPV4_SPECIAL: tuple[Block, ...] = (
    _b("0.0.0.0/8", '"This network"', "RFC 791", False, "unspecified"),
    _b("0.0.0.0/32", '"This host on this network"', "RFC 1122", False, "unspecified"),
    _b("10.0.0.0/8", "Private-Use", "RFC 1918", False, "private"),
    _b("100.64.0.0/10", "Shared Address Space (carrier-grade NAT)", "RFC 6598", False, "private"),
    _b("127.0.0.0/8", "Loopback", "RFC 1122", False, "loopback"),
    _b("169.254.0.0/16", "Link Local", "RFC 3927", False, "link-local (cloud metadata)"),
    _b("172.16.0.0/12", "Private-Use", "RFC 1918", False, "private"),
    _b("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False, "reserved"),
    _b("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False, "reserved"),
    _b("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False, "reserved"),
    _b("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True, "anycast"),
    _b("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True, "anycast"),
    _b("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880", False, "reserved"),
    _b("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880", False, "reserved"),
    _b("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False, "documentation"),
    _b("192.31.196.0/24", "AS112-v4", "RFC 7535", True, "anycast"),
    _b("192.52.193.0/24", "AMT", "RFC 7450", True, "anycast"),
    _b("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", None, "reserved"),
    _b("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False, "reserved"),
    _b("192.168.0.0/16", "Private-Use", "RFC 1918", False, "private"),
    _b("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True, "anycast"),
    _b("198.18.0.0/15", "Benchmarking", "RFC 2544", False, "benchmarking"),
    _b("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False, "documentation"),
    _b("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False, "documentation"),
    _b("240.0.0.0/4", "Reserved", "RFC 1112", False, "reserved"),
    _b("255.255.255.255/32", "Limited Broadcast", "RFC 919", False, "broadcast"),
    # from the IPv4 Address Space Registry: not unicast at all
    _b("224.0.0.0/4", "Multicast", "RFC 5771", False, "multicast"),
)

IPV6_SPECIAL: tuple[Block, ...] = (
    _b("::1/128", "Loopback Address", "RFC 4291", False, "loopback"),
    _b("::/128", "Unspecified Address", "RFC 4291", False, "unspecified"),
    _b("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False, "reserved"),
    _b("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True, "NAT64"),
    _b("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", "RFC 8215", False, "private"),
    _b("100::/64", "Discard-Only Address Block", "RFC 6666", False, "reserved"),
    _b("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False, "reserved"),
    _b("2001::/23", "IETF Protocol Assignments", "RFC 2928", False, "reserved"),
    _b("2001::/32", "TEREDO", "RFC 4380", None, "reserved"),
    _b("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True, "anycast"),
    _b("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True, "anycast"),
    _b("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True, "anycast"),
    _b("2001:2::/48", "Benchmarking", "RFC 5180", False, "benchmarking"),
    _b("2001:3::/32", "AMT", "RFC 7450", True, "anycast"),
    _b("2001:4:112::/48", "AS112-v6", "RFC 7535", True, "anycast"),
    _b("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", None, "reserved"),
    _b("2001:20::/28", "ORCHIDv2", "RFC 7343", True, "overlay"),
    _b("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True, "overlay"),
    _b("2001:db8::/32", "Documentation", "RFC 3849", False, "documentation"),
    _b("2002::/16", "6to4", "RFC 3056", None, "6to4"),
    _b("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True, "anycast"),
    _b("3fff::/20", "Documentation", "RFC 9637", False, "documentation"),
    _b("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False, "reserved"),
    _b("fc00::/7", "Unique-Local", "RFC 4193", False, "private"),
    _b("fe80::/10", "Link-Local Unicast", "RFC 4291", False, "link-local"),
    # from the IPv6 Address Space Registry (outside 2000::/3; named for clearer refusals)
    _b("fec0::/10", "Site-Local (deprecated)", "RFC 3879", False, "private (deprecated site-local)"),
    _b("ff00::/8", "Multicast", "RFC 4291", False, "multicast"),
)
# fmt: on

IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


@lru_cache(maxsize=1)
def _by_prefix() -> dict[int, dict[int, list[Block]]]:
    """version -> prefix length -> blocks, longest first when searched."""
    table: dict[int, dict[int, list[Block]]] = {4: {}, 6: {}}
    for block in (*IPV4_SPECIAL, *IPV6_SPECIAL):
        table[block.network.version].setdefault(block.network.prefixlen, []).append(block)
    return table


def special_block(address: IPAddress) -> Block | None:
    """The longest special-purpose block that contains ``address``, or None."""
    for _, blocks in sorted(_by_prefix()[address.version].items(), reverse=True):
        for block in blocks:
            if address in block.network:
                return block
    return None


def classify(address: IPAddress) -> str | None:
    """None if a tool target may be ``address`` itself; else what it is, for the refusal message."""
    block = special_block(address)
    if block is not None and block.globally_reachable is not True:
        return f"{block.kind} ({block.name}, {block.reference})"
    if address.version == 6 and address not in IPV6_GLOBAL_UNICAST and block is None:
        return "reserved (outside IPv6 global unicast 2000::/3)"
    return None
