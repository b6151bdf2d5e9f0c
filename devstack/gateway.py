"""The local API gateway: an ASGI app that turns each HTTP request into an API Gateway HTTP API
(payload 2.0) event, invokes the real Lambda handler in its function host, and turns the result
back into an HTTP response. Served by uvicorn.

Besides the template's routes, the all-routes gateway answers two local-only paths:
``GET /_local/status`` (what runs, invocation counts) and ``POST /_local/invoke/{FunctionId}``
(invoke a function with the posted event, like ``sam local invoke``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from devstack.apigw import Router, build_event, to_http
from devstack.invoker import Invoker

Send = Callable[[dict[str, Any]], Any]


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
    raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or [("content-type", "application/json")])
    ]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class Gateway:
    def __init__(self, router: Router, invoker: Invoker, *, status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.router = router
        self.invoker = invoker
        self.status = status  # set on the all-routes gateway only

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]

        if self.status is not None and path.startswith("/_local/"):
            await self._local(method, path, body, send)
            return

        match = self.router.match(method, path)
        if match is None:
            await _respond(send, 404, b'{"message":"Not Found"}')
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
        )
        try:
            result = await self.invoker.ainvoke(match.route.function, event)
        except Exception:  # the function host is down: what API Gateway says when the integration fails
            await _respond(send, 503, b'{"message":"Service Unavailable"}')
            return
        if result.function_error:
            await _respond(send, 500, b'{"message":"Internal Server Error"}')
            return
        status, out_headers, out_body = to_http(result.payload)
        out_headers = [(k, v) for k, v in out_headers if k != "content-length"]
        out_headers.append(("apigw-requestid", event["requestContext"]["requestId"]))
        await _respond(send, status, out_body, out_headers)

    async def _local(self, method: str, path: str, body: bytes, send: Send) -> None:
        assert self.status is not None
        if method == "GET" and path == "/_local/status":
            await _respond(send, 200, json.dumps(self.status()).encode())
            return
        prefix = "/_local/invoke/"
        if method == "POST" and path.startswith(prefix):
            function = path[len(prefix) :]
            if function not in self.invoker.endpoints:
                await _respond(send, 404, json.dumps({"message": f"no function {function}"}).encode())
                return
            result = await self.invoker.ainvoke(function, json.loads(body or b"{}"))
            out = {"payload": result.payload, "function_error": result.function_error, "request_id": result.request_id}
            await _respond(send, 200, json.dumps(out).encode())
            return
        await _respond(send, 404, b'{"message":"Not Found"}')
