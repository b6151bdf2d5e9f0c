"""The local API gateway: an ASGI app that turns each HTTP request into an API Gateway HTTP API
(payload 2.0) event, invokes the real Lambda handler in its function host, and turns the result
back into an HTTP response. Served by uvicorn.

AWS's limits apply as deployed (devstack/limits.py): a body over 10 MB or an event over Lambda's
6 MB is 413, an invocation still running at the integration timeout (30 s; DEVSTACK_API_TIMEOUT_SECONDS)
is 503 while the function runs on, and a failed or throttled function is 500 — each with the fixed
``{"message": ...}`` body the HTTP API sends.

Besides the template's routes, the all-routes gateway answers two local-only paths:
``GET /_local/status`` (what runs: containers, cold starts, crashes, timeouts, restarts) and
``POST /_local/invoke/{FunctionId}`` (invoke a function with the posted event, like ``sam local
invoke``; Lambda's own 413/429 come back as they are).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from devstack import limits
from devstack.apigw import Router, build_event, to_http
from devstack.invoker import Invoker
from devstack.template import ACCOUNT_ID

Send = Callable[[dict[str, Any]], Any]


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
    raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or [("content-type", "application/json")])
    ]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, error: limits.GatewayError, request_id: str | None = None) -> None:
    headers = [("content-type", "application/json")]
    if request_id:
        headers.append(("apigw-requestid", request_id))
    await _respond(send, error.status, error.body, headers)


class Gateway:
    def __init__(
        self,
        router: Router,
        invoker: Invoker,
        *,
        status: Callable[[], dict[str, Any]] | None = None,
        integration_timeout_s: float = limits.HTTP_API_INTEGRATION_TIMEOUT_S,
        account_id: str = ACCOUNT_ID,
    ) -> None:
        self.account_id = account_id
        self.router = router
        self.invoker = invoker
        self.status = status  # set on the all-routes gateway only
        self.integration_timeout_s = integration_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limits.HTTP_API_PAYLOAD_BYTES:
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        if size > limits.HTTP_API_PAYLOAD_BYTES:
            await _error(send, limits.TOO_LARGE)
            return
        body = b"".join(chunks)
        method, path = scope["method"], scope["path"]

        if self.status is not None and path.startswith("/_local/"):
            await self._local(method, path, body, send)
            return

        match = self.router.match(method, path)
        if match is None:
            await _error(send, limits.NOT_FOUND)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        client = scope.get("client") or ("127.0.0.1", 0)
        host = next((v for k, v in headers if k.lower() == "host"), "localhost")
        event = build_event(
            method=method,
            path=path,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            match=match,
            source_ip=client[0],
            domain=host,
            account_id=self.account_id,
        )
        request_id = event["requestContext"]["requestId"]
        # The invocation runs in its own thread: past the integration timeout the gateway answers and
        # the function carries on until it finishes or reaches its own timeout, as in AWS.
        running = self.invoker.submit(match.route.function, event, wait_s=self.integration_timeout_s)
        try:
            result = await asyncio.wait_for(asyncio.shield(running), self.integration_timeout_s)
        except TimeoutError:
            await _error(send, limits.INTEGRATION_TIMEOUT, request_id)
            return
        except Exception:  # no container could be started in time
            await _error(send, limits.INTEGRATION_FAILURE, request_id)
            return
        if result.status == 413:
            await _error(send, limits.TOO_LARGE, request_id)
            return
        if result.status != 200 or result.function_error:
            await _error(send, limits.INTEGRATION_FAILURE, request_id)
            return
        status, out_headers, out_body = to_http(result.payload)
        out_headers = [(k, v) for k, v in out_headers if k != "content-length"]
        out_headers.append(("apigw-requestid", request_id))
        await _respond(send, status, out_body, out_headers)

    async def _local(self, method: str, path: str, body: bytes, send: Send) -> None:
        assert self.status is not None
        if method == "GET" and path == "/_local/status":
            await _respond(send, 200, json.dumps(self.status()).encode())
            return
        prefix = "/_local/invoke/"
        if method == "POST" and path.startswith(prefix):
            function = path[len(prefix) :]
            if function not in self.invoker.pools:
                await _respond(send, 404, json.dumps({"message": f"no function {function}"}).encode())
                return
            result = await self.invoker.ainvoke(function, json.loads(body or b"{}"))
            out = {
                "payload": result.payload,
                "function_error": result.function_error,
                "request_id": result.request_id,
                "error_type": result.error_type,
                "cold_start": result.cold_start,
            }
            await _respond(send, result.status, json.dumps(out).encode())
            return
        await _respond(send, 404, b'{"message":"Not Found"}')
