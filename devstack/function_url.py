"""A local Lambda Function URL with ``InvokeMode: RESPONSE_STREAM``: the long path of the local stack.

Each HTTP request becomes a Function URL event (payload format 2.0, ``routeKey: $default``), handed to a
"container" of the function: the process the image's EntryPoint + Command start (for the LLM Proxy,
``python -m daarion_common.lambda_streaming llm_proxy.app.app``), talking to its own local Runtime API
(devstack/runtime_api.py). What the runtime streams is relayed to the caller as it arrives: the
http-integration prelude becomes the status and headers, every following chunk is written at once.

As in AWS: an invocation error before any byte is a 502; a body cut mid-stream (error trailers) ends the
response where it stands; the function's Timeout stops the invocation (its container is replaced);
reserved concurrency throttles with 429; an event over 6 MB is a 413.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

from devstack import limits
from devstack.apigw import v2_event
from devstack.invoker import FunctionPool, Throttled
from devstack.runtime_api import Chunk, End, InvocationRecord, split_prelude

Send = Callable[[dict[str, Any]], Any]
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"


def function_url_event(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    url_id: str = "local",
    region: str = "us-east-1",
) -> dict[str, Any]:
    """The event a Function URL hands the function (payload format 2.0, as AWS documents it)."""
    headers = [*headers, ("x-forwarded-proto", "http")] if not any(
        k.lower() == "x-forwarded-proto" for k, _ in headers
    ) else headers  # fmt: skip
    return v2_event(
        method=method, path=path, query_string=query_string, headers=headers, body=body, source_ip=source_ip,
        domain=f"{url_id}.lambda-url.{region}.on.aws", domain_prefix=url_id, api_id=url_id,
        account_id="anonymous", route_key="$default", request_id=str(uuid.uuid4()),
    )  # fmt: skip


async def _plain(send: Send, status: int, message: str, request_id: str | None = None) -> None:
    body = json.dumps({"Message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-amzn-requestid", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FunctionUrl:
    """ASGI app: the Function URL of one streaming function (its pool of containers)."""

    def __init__(self, pool: FunctionPool, *, log: Callable[[str], None] = print) -> None:
        self.pool = pool
        self.log = log

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        event = function_url_event(
            method=scope["method"],
            path=scope["path"],
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            source_ip=(scope.get("client") or ("127.0.0.1", 0))[0],
        )
        if len(json.dumps(event).encode()) > limits.LAMBDA_SYNC_REQUEST_BYTES:
            await _plain(send, 413, "Request Entity Too Large")
            return
        loop = asyncio.get_running_loop()
        timeout_s = self.pool.timeout_s
        try:
            container, _cold = await loop.run_in_executor(None, self.pool.acquire, time.monotonic() + timeout_s)
        except Throttled:
            await _plain(send, 429, "Rate Exceeded.")
            return
        except Exception as exc:  # no container could start (an init error, for one)
            self.log(f"{self.pool.name}: no container for the Function URL: {type(exc).__name__}: {exc}")
            await _plain(send, 502, "Internal Server Error")
            return
        with self.pool.cond:
            self.pool.counts["invocations"] += 1
        record = container.runtime.invoke(event, timeout_s)
        try:
            outcome = await self._relay(record, container, send, loop, time.monotonic() + timeout_s)
        finally:
            container.runtime.forget(record)
        if outcome in ("timed out", "died during an invocation"):
            self.pool.discard(container, outcome)
        else:
            container.invocations += 1
            self.pool.release(container)
        if outcome != "ok":
            with self.pool.cond:
                self.pool.counts["errors"] += 1

    async def _relay(
        self, record: InvocationRecord, container: Any, send: Send, loop: asyncio.AbstractEventLoop, until: float
    ) -> str:
        """Relay the runtime's stream to the caller as it arrives; returns how the invocation ended."""
        started = False
        buffer = b""
        integration = None  # known once the runtime opened its response

        async def start(status: int, headers: list[tuple[bytes, bytes]]) -> None:
            nonlocal started
            started = True
            headers.append((b"x-amzn-requestid", record.request_id.encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})

        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                self.log(f"{self.pool.name}: Task timed out after {self.pool.timeout_s:.2f} seconds (Function URL)")
                if not started:
                    await _plain(send, 502, "Internal Server Error", record.request_id)
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return "timed out"
            try:
                item = await loop.run_in_executor(None, record.events.get, True, min(remaining, 0.5))
            except queue.Empty:
                if not container.alive():
                    if not started:
                        await _plain(send, 502, "Internal Server Error", record.request_id)
                    else:
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return "died during an invocation"
                continue
            if isinstance(item, Chunk):
                if integration is None:
                    integration = (record.content_type or "").startswith(HTTP_INTEGRATION)
                if not integration:
                    if not started:
                        content_type = (record.content_type or "application/octet-stream").encode()
                        await start(200, [(b"content-type", content_type)])
                    await send({"type": "http.response.body", "body": item.data, "more_body": True})
                    continue
                if started:
                    await send({"type": "http.response.body", "body": item.data, "more_body": True})
                    continue
                buffer += item.data
                split = split_prelude(buffer)
                if split is None:
                    continue
                meta, rest = split
                out = [
                    (k.lower().encode("latin-1"), str(v).encode("latin-1"))
                    for k, v in (meta.get("headers") or {}).items()
                ]
                out += [(b"set-cookie", c.encode("latin-1")) for c in meta.get("cookies") or []]
                await start(int(meta.get("statusCode") or 200), out)
                if rest:
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
                continue
            assert isinstance(item, End)
            if not started:
                if item.outcome == "ok" and not integration:  # an empty body, not a Function URL answer
                    await start(200, [(b"content-type", (record.content_type or "application/json").encode())])
                else:
                    error = (item.error or {}).get("errorMessage") or "no response prelude"
                    self.log(f"{self.pool.name}: invocation error {item.error_type}: {error}")
                    await _plain(send, 502, "Internal Server Error", record.request_id)
                    return "error"
            if item.outcome == "cut":
                error = (item.error or {}).get("errorMessage")
                self.log(f"{self.pool.name}: the stream ended with {item.error_type}: {error}")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return "ok" if item.outcome == "ok" else item.outcome
