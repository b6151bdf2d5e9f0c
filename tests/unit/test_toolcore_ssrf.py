"""SSRF: private, loopback, link-local and local IPv6 targets are refused in every encoding, for names that
resolve to them, and behind redirects — proven against real loopback servers that must see no request."""

from __future__ import annotations

import pytest

from tests.fixtures.toolcore import make_service, tool
from toolcore.ssrf import Allowlist, TargetRefused, check_target, literal_address

REFUSED_HOSTS = [
    ("127.0.0.1", "loopback"),
    ("2130706433", "loopback"),  # decimal
    ("0x7f000001", "loopback"),  # hex
    ("0x7f.0x0.0x0.0x1", "loopback"),  # dotted hex
    ("0177.0.0.1", "loopback"),  # octal
    ("017700000001", "loopback"),  # octal, one number
    ("127.1", "loopback"),  # short form
    ("[::1]", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped IPv6
    ("[::ffff:7f00:1]", "loopback"),  # the same, hex
    ("[0:0:0:0:0:ffff:127.0.0.1]", "loopback"),
    ("[2002:7f00:1::]", "loopback"),  # 6to4 around 127.0.0.1
    ("169.254.169.254", "link-local"),  # the cloud metadata endpoint
    ("2852039166", "link-local"),  # the same, decimal
    ("0xa9fea9fe", "link-local"),  # hex
    ("0251.0376.0251.0376", "link-local"),  # octal
    ("[::ffff:169.254.169.254]", "link-local"),
    ("[fe80::1]", "link-local"),
    ("[fe80::1%25eth0]", "link-local"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("0xc0a80101", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("[fc00::1]", "private"),  # unique local
    ("[fd12:3456::1]", "private"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("[::]", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("[ff02::1]", "multicast"),
]


@pytest.mark.parametrize(("host", "kind"), REFUSED_HOSTS)
def test_every_encoding_of_a_non_public_address_is_refused(host, kind):
    with pytest.raises(TargetRefused, match=kind):
        check_target(host, 80, allowlist=Allowlist(), resolver=_no_dns)


def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} is a literal address and must not be resolved")


@pytest.mark.parametrize("host", ["8.8.8.8", "[2001:4860:4860::8888]", "134744072"])
def test_public_addresses_pass(host):
    assert check_target(host, 443, allowlist=Allowlist(), resolver=_no_dns) in ("8.8.8.8", "2001:4860:4860::8888")


def test_literal_address_parses_the_legacy_forms():
    assert str(literal_address("0x7f.1")) == "127.0.0.1"
    assert str(literal_address("2130706433")) == "127.0.0.1"
    assert literal_address("example.org") is None
    assert literal_address("1.2.3.4.example.org") is None


def fake_dns(table: dict[str, list[str]]):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError("NXDOMAIN")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    ("name", "answers"),
    [
        ("evil.example", ["127.0.0.1"]),
        ("metadata.example", ["169.254.169.254"]),
        ("mixed.example", ["93.184.216.34", "10.0.0.7"]),  # one private answer is enough to refuse
        ("v6.example", ["::1"]),
        ("mapped.example", ["::ffff:192.168.0.1"]),
    ],
)
def test_names_resolving_to_non_public_addresses_are_refused(name, answers):
    with pytest.raises(TargetRefused):
        check_target(name, 80, allowlist=Allowlist(), resolver=fake_dns({name: answers}))


def test_unresolvable_name_is_refused():
    with pytest.raises(TargetRefused, match="does not resolve"):
        check_target("nx.example", 80, allowlist=Allowlist(), resolver=fake_dns({}))


def test_allowlist_is_by_exact_host_and_port():
    allow = Allowlist.parse("127.0.0.1:8080, Tools.Internal")
    assert check_target("127.0.0.1", 8080, allowlist=allow, resolver=_no_dns) == "127.0.0.1"
    assert check_target("tools.internal", 9, allowlist=allow, resolver=fake_dns({"tools.internal": ["10.0.0.2"]}))
    for host, port in (("127.0.0.1", 8081), ("2130706433", 8080), ("[::1]", 8080), ("localhost", 8080)):
        with pytest.raises(TargetRefused):
            check_target(host, port, allowlist=allow, resolver=fake_dns({"localhost": ["127.0.0.1"]}))


# ---------------------------------------------------------------- through the executor, against real servers

LOOPBACK_SPELLINGS = ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "localhost", "[::ffff:127.0.0.1]"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_calls_to_loopback_in_any_spelling_never_reach_the_server(serve_with, call_tool, tool_target, host):
    # the real system resolver: `localhost` resolves to 127.0.0.1 and must be refused for that
    serve_with(make_service(tool("t.ssrf", "http", f"http://{host}:{tool_target.port}/echo")))
    out = call_tool("t.ssrf")
    assert out["ok"] is False and out["error"]["code"] == "upstream_error"
    assert "refused" in out["error"]["message"]
    assert tool_target.hits["/echo"] == 0


def test_the_same_server_is_reached_once_allowlisted(serve_with, call_tool, tool_target):
    serve_with(make_service(tool("t.ok", "http", tool_target.url("/echo")), allow=[tool_target.host_port]))
    assert call_tool("t.ok")["ok"] is True
    assert tool_target.hits["/echo"] == 1


def test_a_name_mapped_to_loopback_by_dns_is_refused(serve_with, call_tool, tool_target):
    dns = fake_dns({"innocent.example": ["127.0.0.1"]})
    serve_with(make_service(tool("t.dns", "http", f"http://innocent.example:{tool_target.port}/echo"), resolver=dns))
    out = call_tool("t.dns")
    assert out["error"]["code"] == "upstream_error" and "loopback" in out["error"]["message"]
    assert tool_target.hits["/echo"] == 0


def test_connects_to_the_checked_address_resolving_once(serve_with, call_tool, tool_target):
    """An allowlisted name is resolved once per call and the connection goes to that address (the name
    itself does not resolve on this machine), with the original Host header."""
    dns = fake_dns({"tools.internal": ["127.0.0.1"]})
    serve_with(
        make_service(
            tool("t.pinned", "http", f"http://tools.internal:{tool_target.port}/echo"),
            allow=[f"tools.internal:{tool_target.port}"],
            resolver=dns,
        )
    )
    out = call_tool("t.pinned")
    assert out["ok"] is True
    assert out["result"]["host"] == f"tools.internal:{tool_target.port}"
    assert dns.calls == ["tools.internal"]


@pytest.mark.parametrize("where", ["other-loopback", "metadata", "private"])
def test_redirects_are_never_followed(serve_with, call_tool, tool_target, other_target, where):
    location = {
        "other-loopback": other_target.url("/echo"),
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "private": "http://10.0.0.1/admin",
    }[where]
    from urllib.parse import quote

    serve_with(
        make_service(
            tool("t.redir", "http", tool_target.url(f"/redirect?to={quote(location, safe='')}"),
                 retries=2, hints={"idempotent": True}),
            allow=[tool_target.host_port],
        )
    )  # fmt: skip
    out = call_tool("t.redir")
    assert out["error"]["code"] == "upstream_error" and "redirect" in out["error"]["message"]
    assert tool_target.hits["/redirect"] == 1  # a redirect is not retried either
    assert other_target.hits["/echo"] == 0


def test_environment_proxies_are_ignored(serve_with, call_tool, tool_target, other_target, monkeypatch):
    """A proxy would connect by name and undo the check; the client does not read HTTP(S)_PROXY."""
    monkeypatch.setenv("HTTP_PROXY", other_target.url(""))
    monkeypatch.setenv("http_proxy", other_target.url(""))
    serve_with(make_service(tool("t.ok", "http", tool_target.url("/echo")), allow=[tool_target.host_port]))
    assert call_tool("t.ok")["ok"] is True
    assert sum(other_target.hits.values()) == 0


# ---------------------------------------------------------------- the dated IANA table, not is_global

IANA_REFUSED = [
    ("[fec0::1]", "site-local"),  # deprecated site-local (RFC 3879)
    ("[feff::1]", "site-local"),
    ("[3fff::1]", "documentation"),  # RFC 9637
    ("[3fff:fff::1]", "documentation"),
    ("[2001:db8::1]", "documentation"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("[2001:2::1]", "benchmarking"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("192.0.0.170", "reserved"),
    ("192.88.99.1", "reserved"),  # deprecated 6to4 relay anycast
    ("[64:ff9b:1::1]", "private"),  # local-use NAT64: Python versions disagree on it
    ("[64:ff9b::a00:1]", "private"),  # NAT64 around 10.0.0.1
    ("[2002::1]", "unspecified"),  # 6to4 around 0.0.0.0
    ("[2002:808:808::1]", "6to4"),  # 6to4 around a public address: the block itself is deprecated
    ("[2001:0:808:808::fefe:fefe]", "reserved"),  # Teredo (server 8.8.8.8, client 1.1.1.1)
    ("[2001:10::1]", "reserved"),  # deprecated ORCHID
    ("[100::1]", "reserved"),  # discard-only
    ("[5f00::1]", "reserved"),  # SRv6 SIDs
    ("[4000::1]", "outside IPv6 global unicast"),  # unallocated space
    ("[::8.8.8.8]", "outside IPv6 global unicast"),  # deprecated IPv4-compatible
    ("[::ffff:8.8.8.8]", "reserved"),  # IPv4-mapped: never a target of its own
]


@pytest.mark.parametrize(("host", "kind"), IANA_REFUSED)
def test_special_purpose_ranges_from_the_iana_table_are_refused(host, kind):
    with pytest.raises(TargetRefused, match=kind):
        check_target(host, 443, allowlist=Allowlist(), resolver=_no_dns)


@pytest.mark.parametrize(
    "host",
    [
        "8.8.8.8",
        "[2606:4700:4700::1111]",
        "[64:ff9b::808:808]",  # NAT64 (well-known prefix) around a public address
        "192.0.0.9",  # Port Control Protocol anycast: IANA says globally reachable, inside a refused /24
        "[2001:1::1]",  # the same in IPv6; Python versions disagree on it
        "[2001:4860::1]",  # in 2001::/16 but outside 2001::/23
    ],
)
def test_globally_reachable_addresses_pass_whatever_python_thinks(host):
    assert check_target(host, 443, allowlist=Allowlist(), resolver=_no_dns)


def test_every_block_of_the_table_decides_as_iana_says():
    """Each block's first and last address: refused unless IANA marks the block globally reachable."""
    from toolcore.address_registry import IPV4_SPECIAL, IPV6_SPECIAL, REVIEWED, classify, special_block

    assert REVIEWED  # the table is dated
    for block in (*IPV4_SPECIAL, *IPV6_SPECIAL):
        for address in (block.network[0], block.network[-1]):
            assert special_block(address) is not None
            if special_block(address) is block:  # not inside a more specific block
                refused = classify(address) is not None
                assert refused is (block.globally_reachable is not True), (block, address)


def test_the_table_does_not_use_is_global():
    import ast
    import inspect

    from toolcore import address_registry, ssrf

    for module in (address_registry, ssrf):
        used = {n.attr for n in ast.walk(ast.parse(inspect.getsource(module))) if isinstance(n, ast.Attribute)}
        assert not used & {"is_global", "is_private", "is_reserved", "is_loopback", "is_link_local"}, module


# ---------------------------------------------------------------- connections pooled per host name


def test_two_host_names_on_one_address_never_share_a_connection(serve_with, call_tool, tool_target):
    """alpha.internal and beta.internal both resolve to the loopback server (both allowlisted): each name
    gets its own kept-alive connection, reused for that name only."""
    port = tool_target.port
    dns = fake_dns({"alpha.internal": ["127.0.0.1"], "beta.internal": ["127.0.0.1"]})
    serve_with(
        make_service(
            tool("t.alpha", "http", f"http://alpha.internal:{port}/echo"),
            tool("t.beta", "http", f"http://beta.internal:{port}/echo"),
            allow=[f"alpha.internal:{port}", f"beta.internal:{port}"],
            resolver=dns,
        )
    )
    for _ in range(3):
        assert call_tool("t.alpha")["result"]["host"] == f"alpha.internal:{port}"
        assert call_tool("t.beta")["result"]["host"] == f"beta.internal:{port}"
    assert tool_target.hits["/echo"] == 6
    connections = tool_target.hosts_by_connection
    assert all(len(hosts) == 1 for hosts in connections.values()), connections  # never two names on one
    assert sorted(next(iter(h)) for h in connections.values()) == [f"alpha.internal:{port}", f"beta.internal:{port}"]


def test_one_service_pools_per_name_and_reuses(serve_with, call_tool, tool_target):
    from toolcore.executors import HttpExecutor
    from toolcore.ssrf import Allowlist as AL

    executor = HttpExecutor(allowlist=AL())
    assert executor.client_for("http", "A.example", 80) is executor.client_for("http", "a.example", 80)
    assert executor.client_for("http", "a.example", 80) is not executor.client_for("http", "b.example", 80)
    assert executor.client_for("https", "a.example", 443) is not executor.client_for("http", "a.example", 443)
    executor.close()
