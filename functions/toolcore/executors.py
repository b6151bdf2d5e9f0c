"""Running a tool: the HTTP executor (POST ``{args, context}`` to the target) and the Python executor
(a function of Toolcore's own built-in tools package).

Both return an :class:`Outcome`; a failure is an Outcome with an error code, never an exception the
caller has to classify. Nothing here logs arguments, results or secret values.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from toolcore.ssrf import Allowlist, Resolver, TargetRefused, check_target, literal_address, system_resolver

if TYPE_CHECKING:
    import httpx

    from toolcore.registry import Tool

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 1.0


@dataclass
class Outcome:
    ok: bool
    result: Any = None
    code: str | None = None
    message: str | None = None
    truncated: bool = False
    attempts: int = 0
    upstream_ms: float = 0.0

    @classmethod
    def fail(cls, code: str, message: str, **more: Any) -> Outcome:
        return cls(ok=False, code=code, message=message, **more)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _AttemptFailed(Exception):
    def __init__(self, code: str, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.code, self.message, self.retriable = code, message, retriable


# ---------------------------------------------------------------- HTTP


class HttpExecutor:
    """POSTs ``{args, context}`` to HTTP tool targets, after the SSRF check, over pooled connections.

    Connections are pooled **per host name** (one httpx client per scheme, name and port), never only
    per address: the request goes to the checked address (so the pool inside a client is keyed by that
    address), and a connection verified for ``a.example`` — TLS certificate and SNI included — must
    never carry a request for ``b.example`` that happens to resolve to the same address. The number of
    clients is bounded by the registry's targets. Redirects off; proxies and .netrc ignored (a proxy
    would connect to the name itself and undo the address pinning).
    """

    def __init__(self, *, allowlist: Allowlist, resolver: Resolver = system_resolver) -> None:
        self.allowlist = allowlist
        self.resolver = resolver
        self._clients: dict[tuple[str, str, int], httpx.Client] = {}
        self._lock = threading.Lock()

    def client_for(self, scheme: str, host: str, port: int) -> httpx.Client:
        key = (scheme, host.lower(), port)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._clients[key] = _new_client()
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def run(
        self,
        tool: Tool,
        args: dict[str, Any],
        context: dict[str, Any],
        *,
        secret_headers: dict[str, str] | None = None,
        redact: list[str] | None = None,
    ) -> Outcome:
        """POST ``{args, context}`` to the tool's target. ``redact``: secret values to cut out of the answer
        (a target that echoes its Authorization header must not hand the token to the agent)."""
        return _post(self, tool, args, context, secret_headers=secret_headers, redact=redact)


def _new_client() -> httpx.Client:
    import socket

    import httpx

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    # TCP_NODELAY: a request is small headers then a small body; Nagle would hold the body
    # back for the target's delayed ACK (~40 ms on Linux loopback).
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    return httpx.Client(
        transport=httpx.HTTPTransport(limits=limits, socket_options=nodelay),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "daarion-toolcore/1"},
    )


def _redact(body: bytes, secret_values: list[str]) -> bytes:
    for value in secret_values:
        if value and value.encode() in body:
            body = body.replace(value.encode(), b"[redacted]")
    return body


def _post(
    clients: HttpExecutor,
    tool: Tool,
    args: dict[str, Any],
    context: dict[str, Any],
    *,
    secret_headers: dict[str, str] | None,
    redact: list[str] | None,
) -> Outcome:
    import httpx

    # Parsed here, not by httpx: legacy spellings (0177.0.0.1) must reach the check, not a parser error.
    parts = urlsplit(tool.target)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return Outcome.fail("upstream_error", "the tool's target URL has an invalid port")
    try:
        address = check_target(host, port, allowlist=clients.allowlist, resolver=clients.resolver)
    except TargetRefused as exc:
        return Outcome.fail("upstream_error", str(exc))
    # Connect to the checked address, never to a second DNS answer for the name.
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    pinned = httpx.URL(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")))
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "Accept": "application/json",
        **(secret_headers or {}),
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" and literal_address(host) is None else {}
    body = json.dumps({"args": args, "context": context}, separators=(",", ":")).encode()
    # the bare values first, so an echoed "Bearer <token>" reads "Bearer [redacted]"
    client = clients.client_for(parts.scheme, host, port)
    secret_values = [v for v in dict.fromkeys([*(redact or []), *(secret_headers or {}).values()]) if v]
    attempts = 1 + (tool.config.retries if tool.config.hints.idempotent else 0)
    upstream_ms = 0.0
    failure: _AttemptFailed | None = None
    for attempt in range(attempts):
        if attempt:
            delay = min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_MAX_S)
            time.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not cryptography
        started = time.perf_counter()
        try:
            raw, truncated = _attempt(client, tool, pinned, body, headers, extensions)
        except _AttemptFailed as exc:
            upstream_ms += (time.perf_counter() - started) * 1000
            failure = exc
            if exc.retriable:
                continue
            break
        upstream_ms += (time.perf_counter() - started) * 1000
        raw = _redact(raw, secret_values)
        if truncated:
            text = raw.decode("utf-8", errors="replace")
            return Outcome(ok=True, result=text, truncated=True, attempts=attempt + 1, upstream_ms=upstream_ms)
        try:
            result = json.loads(raw) if raw else None
        except ValueError:
            return Outcome.fail(
                "invalid_result", "the tool's target answered with something that is not JSON",
                attempts=attempt + 1, upstream_ms=upstream_ms,
            )  # fmt: skip
        return Outcome(ok=True, result=result, attempts=attempt + 1, upstream_ms=upstream_ms)
    assert failure is not None
    return Outcome.fail(failure.code, failure.message, attempts=attempt + 1, upstream_ms=upstream_ms)


def _attempt(
    client: httpx.Client, tool: Tool, url: httpx.URL, body: bytes, headers: dict[str, str], extensions: dict[str, Any]
) -> tuple[bytes, bool]:
    """One POST; (body up to the cap, whether it was cut). Raises _AttemptFailed."""
    import httpx

    timeout_s = tool.config.timeout
    deadline = time.monotonic() + timeout_s
    cap = tool.config.max_result_bytes
    try:
        with client.stream(
            "POST", url, content=body, headers=headers, timeout=httpx.Timeout(timeout_s), extensions=extensions
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                message = f"the tool's target answered with a redirect ({status}); redirects are not followed"
                raise _AttemptFailed("upstream_error", message, retriable=False)
            if status >= 400:
                raise _AttemptFailed(
                    "upstream_error", f"the tool's target answered HTTP {status}", retriable=status in RETRY_STATUSES
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise _AttemptFailed("timeout", f"the tool did not answer within {timeout_s:g}s", retriable=True)
                chunks.append(chunk)
                size += len(chunk)
                if size > cap:
                    return b"".join(chunks)[:cap], True
            return b"".join(chunks), False
    except httpx.TimeoutException as exc:
        raise _AttemptFailed("timeout", f"the tool did not answer within {timeout_s:g}s", retriable=True) from exc
    except httpx.TransportError as exc:
        raise _AttemptFailed(
            "upstream_error", f"the tool's target could not be reached ({type(exc).__name__})", retriable=True
        ) from exc


# ---------------------------------------------------------------- Python


class ToolError(Exception):
    """Raised by a built-in tool to fail with a message meant for the agent (code upstream_error)."""


class PythonExecutor:
    """Runs built-in tools on its own worker threads (sync functions) or a fresh loop (coroutines)."""

    def __init__(self, max_workers: int = 4) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="toolcore-python")

    def run(self, tool: Tool, args: dict[str, Any], context: dict[str, Any]) -> Outcome:
        return run_python(tool, args, context, pool=self._pool)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def run_python(
    tool: Tool, args: dict[str, Any], context: dict[str, Any], *, pool: concurrent.futures.ThreadPoolExecutor
) -> Outcome:
    """Sync functions run in a worker thread with the tool's timeout; coroutines under ``wait_for``.

    A timed-out sync function cannot be killed; its thread finishes in the background while the
    caller already has its timeout (built-in tools are ours and must be short).
    """
    function = tool.function
    assert function is not None
    timeout_s = tool.config.timeout
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(function):
            # its own loop in a worker thread: the caller may itself be running on an event loop
            coroutine = asyncio.wait_for(function(args, context), timeout_s)
            result = pool.submit(asyncio.run, coroutine).result()
        else:
            result = pool.submit(function, args, context).result(timeout=timeout_s)
    except (TimeoutError, concurrent.futures.TimeoutError):
        return Outcome.fail("timeout", f"the tool did not finish within {timeout_s:g}s", attempts=1,
                            upstream_ms=(time.perf_counter() - started) * 1000)  # fmt: skip
    except ToolError as exc:
        return Outcome.fail("upstream_error", str(exc), attempts=1, upstream_ms=(time.perf_counter() - started) * 1000)
    elapsed = (time.perf_counter() - started) * 1000
    try:
        encoded = json.dumps(result, separators=(",", ":"))
    except (TypeError, ValueError):
        return Outcome.fail("invalid_result", "the tool returned something that is not JSON", attempts=1,
                            upstream_ms=elapsed)  # fmt: skip
    if len(encoded.encode()) > tool.config.max_result_bytes:
        text = encoded.encode()[: tool.config.max_result_bytes].decode("utf-8", errors="replace")
        return Outcome(ok=True, result=text, truncated=True, attempts=1, upstream_ms=elapsed)
    return Outcome(ok=True, result=result, attempts=1, upstream_ms=elapsed)
