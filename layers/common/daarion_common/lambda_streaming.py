"""Serve any ASGI app as a Lambda function that streams its response (a custom runtime in Python).

Python's managed runtime cannot stream a response, and Mangum buffers the whole body: this module is a
small runtime of its own, speaking Lambda's Runtime API (``AWS_LAMBDA_RUNTIME_API``) with response
streaming, for a function behind a Function URL with ``InvokeMode: RESPONSE_STREAM``. Run it as the
image's entry point with the app's dotted path::

    python -m daarion_common.lambda_streaming llm_proxy.app.app

The protocol, as AWS documents it ("Building a custom runtime", "Implementing response streaming in a
custom runtime"; the same as aws-lambda-nodejs-runtime-interface-client's ResponseStream.js and
aws-lambda-rust-runtime's requests.rs):

- init: import the app; a failure is posted to ``/runtime/init/error`` and the process exits;
- loop: ``GET /2018-06-01/runtime/invocation/next`` gives the event (a Function URL event, payload
  format 2.0) and, in headers, the request id, ``Lambda-Runtime-Deadline-Ms`` (epoch milliseconds),
  the function's ARN and the X-Ray trace id;
- the answer is ``POST /2018-06-01/runtime/invocation/{id}/response`` with
  ``Lambda-Runtime-Function-Response-Mode: streaming``, ``Transfer-Encoding: chunked`` and
  ``Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body``; for a Function URL
  its content type is ``application/vnd.awslambda.http-integration-response`` and the body starts with
  the prelude — JSON ``{statusCode, headers, cookies}`` and 8 NUL bytes — then the HTTP body, each ASGI
  body message written as one chunk the moment the app sends it; the connection is closed after the
  last chunk;
- a failure before anything was sent goes to ``/invocation/{id}/error``; a failure mid-stream ends the
  chunked body with the two trailers (the error type, and the error as base64 JSON), which Lambda
  treats as a completed response carrying the error.

The app sees the scope Mangum gives it (``aws.event``, ``aws.context``: a context object whose
``get_remaining_time_in_millis()`` counts down to the invocation's deadline), so code that reads Lambda's
remaining time behaves the same on both paths. Standard library only: no dependency beyond the app's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import importlib
import json
import os
import socket
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2018-06-01"
HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_DELIMITER = b"\x00" * 8
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
STREAM_ERROR_TYPE = "Runtime.StreamError"

Asgi = Callable[[dict[str, Any], Any, Any], Any]
Around = Callable[[dict[str, Any], Any], contextlib.AbstractContextManager[Any]]


# ---------------------------------------------------------------------------- the context object
@dataclass
class LambdaContext:
    """What Lambda's Python runtime passes as ``context``: the attributes handlers and Powertools read."""

    aws_request_id: str
    deadline_ms: int
    invoked_function_arn: str = ""
    function_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"))
    function_version: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"))
    memory_limit_in_mb: int = field(
        default_factory=lambda: int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    )
    log_group_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""))
    log_stream_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))
    client_context: Any = None
    identity: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass
class Invocation:
    request_id: str
    event: dict[str, Any]
    context: LambdaContext


# ---------------------------------------------------------------------------- the Runtime API
def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[-10:],
    }


def _nodelay(conn: http.client.HTTPConnection) -> None:
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a token is a few bytes: send it now


class ResponseStream:
    """One streamed answer: ``POST /invocation/{id}/response`` with a chunked body, on its own connection."""

    def __init__(self, address: str, request_id: str, content_type: str = HTTP_INTEGRATION_CONTENT_TYPE) -> None:
        self.conn = http.client.HTTPConnection(address)
        _nodelay(self.conn)
        path = f"/{API_VERSION}/runtime/invocation/{urllib.parse.quote(request_id, safe='')}/response"
        self.conn.putrequest("POST", path, skip_accept_encoding=True)
        self.conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
        self.conn.putheader("Transfer-Encoding", "chunked")
        self.conn.putheader("Content-Type", content_type)
        self.conn.putheader("Trailer", f"{ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}")
        self.conn.endheaders()
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:  # a zero-length chunk would end the body
            self.conn.send(b"%X\r\n%s\r\n" % (len(data), data))

    def finish(self, error: BaseException | None = None) -> int:
        """The last chunk (with the error trailers if the body was cut), then Lambda's answer; closes."""
        trailer = b""
        if error is not None:
            body = base64.b64encode(json.dumps(_error_payload(error)).encode()).decode()
            trailer = f"{ERROR_TYPE_TRAILER}: {STREAM_ERROR_TYPE}\r\n{ERROR_BODY_TRAILER}: {body}\r\n".encode()
        try:
            self.conn.send(b"0\r\n" + trailer + b"\r\n")
            response = self.conn.getresponse()
            response.read()
            return response.status
        finally:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.close()


class RuntimeApi:
    """The Runtime API client: next event, streamed response, invocation and init errors."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address or os.environ["AWS_LAMBDA_RUNTIME_API"]
        self._next = http.client.HTTPConnection(self.address)  # kept alive between invocations

    def next(self) -> Invocation:
        try:
            self._next.request("GET", f"/{API_VERSION}/runtime/invocation/next")
            response = self._next.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            self._next.close()  # a connection the API closed: one fresh try
            self._next.request("GET", f"/{API_VERSION}/runtime/invocation/next")
            response = self._next.getresponse()
            raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"runtime API /next answered {response.status}: {raw[:200]!r}")
        headers = response.headers
        trace_id = headers.get("Lambda-Runtime-Trace-Id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id  # as the managed runtimes do, for the X-Ray SDK
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        context = LambdaContext(
            aws_request_id=request_id,
            deadline_ms=int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            invoked_function_arn=headers.get("Lambda-Runtime-Invoked-Function-Arn", ""),
        )
        return Invocation(request_id, json.loads(raw or b"{}"), context)

    def stream(self, request_id: str) -> ResponseStream:
        return ResponseStream(self.address, request_id)

    def _post_error(self, path: str, exc: BaseException, error_type: str | None = None) -> int:
        payload = _error_payload(exc)
        conn = http.client.HTTPConnection(self.address)
        try:
            conn.request(
                "POST",
                path,
                body=json.dumps(payload).encode(),
                headers={
                    "Content-Type": "application/json",
                    ERROR_TYPE_TRAILER: error_type or f"Runtime.{payload['errorType']}",
                },
            )
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def invocation_error(self, request_id: str, exc: BaseException) -> int:
        path = f"/{API_VERSION}/runtime/invocation/{urllib.parse.quote(request_id, safe='')}/error"
        return self._post_error(path, exc, "Function.Unhandled")

    def init_error(self, exc: BaseException) -> int:
        return self._post_error(f"/{API_VERSION}/runtime/init/error", exc, "Runtime.InitError")


# ---------------------------------------------------------------------------- Function URL event -> ASGI
def asgi_scope(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The ASGI scope of a Function URL (or HTTP API) event, payload format 2.0 — as Mangum builds it."""
    request = event.get("requestContext") or {}
    http_ctx = request.get("http") or {}
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    host = headers.get("host") or request.get("domainName") or "lambda-url"
    name, _, port = host.partition(":")
    path = http_ctx.get("path") or event.get("rawPath") or "/"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "http_version": "1.1",
        "method": http_ctx.get("method", "GET"),
        "scheme": headers.get("x-forwarded-proto", "https"),
        "path": urllib.parse.unquote(path),
        "raw_path": path.encode(),
        "query_string": (event.get("rawQueryString") or "").encode(),
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "server": (name, int(port or headers.get("x-forwarded-port") or 443)),
        "client": (http_ctx.get("sourceIp") or "0.0.0.0", 0),
        "aws.event": event,
        "aws.context": context,
    }


def _body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def prelude(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The http-integration-response prelude: JSON status, headers and cookies, then 8 NUL bytes."""
    out: dict[str, str] = {}
    cookies: list[str] = []
    for raw_key, raw_value in headers:
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key == "set-cookie":
            cookies.append(value)
        elif key == "content-length":
            continue  # the length is the stream's; Lambda frames the body itself
        else:
            out[key] = f"{out[key]},{value}" if key in out else value
    out.setdefault("content-type", "application/octet-stream")
    return json.dumps({"statusCode": status, "headers": out, "cookies": cookies}).encode() + PRELUDE_DELIMITER


class _Exchange:
    """One invocation's ASGI exchange: request body in, response messages out to the stream."""

    def __init__(self, api: RuntimeApi, invocation: Invocation) -> None:
        self.api, self.invocation = api, invocation
        self.stream: ResponseStream | None = None
        self.started = self.finished = self.broken = False
        self.delivered = False
        self.done = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if not self.delivered:
            self.delivered = True
            return {"type": "http.request", "body": _body(self.invocation.event), "more_body": False}
        await self.done.wait()  # a streaming response listens for the client going away
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.broken or self.finished:
            return
        try:
            if message["type"] == "http.response.start":
                self.started = True
                self.stream = self.api.stream(self.invocation.request_id)
                self.stream.write(prelude(int(message["status"]), list(message.get("headers") or [])))
            elif message["type"] == "http.response.body" and self.stream is not None:
                self.stream.write(bytes(message.get("body") or b""))
                if not message.get("more_body", False):
                    self.finished = True
                    self.stream.finish()
                    self.done.set()
        except OSError:  # Lambda (the client behind it) is gone: the app hears http.disconnect
            self.broken = True
            if self.stream is not None:
                self.stream.close()
            self.done.set()


async def _invoke(app: Asgi, api: RuntimeApi, invocation: Invocation) -> str:
    """Run the app on one event; returns how it ended: ok, error (before any byte), cut (mid-stream)."""
    exchange = _Exchange(api, invocation)
    scope = asgi_scope(invocation.event, invocation.context)
    try:
        await app(scope, exchange.receive, exchange.send)
    except Exception as exc:
        if exchange.finished or exchange.broken:
            traceback.print_exc()  # the answer was complete (Starlette re-raises after its 500): logged only
            return "ok" if exchange.finished else "cut"
        if not exchange.started or exchange.stream is None:
            traceback.print_exc()
            api.invocation_error(invocation.request_id, exc)
            return "error"
        traceback.print_exc()
        with contextlib.suppress(OSError, http.client.HTTPException):
            exchange.stream.finish(exc)
        return "cut"
    finally:
        exchange.done.set()
    if not exchange.finished and not exchange.broken:
        error = RuntimeError("the app returned without completing its response")
        if exchange.stream is None:
            api.invocation_error(invocation.request_id, error)
            return "error"
        with contextlib.suppress(OSError, http.client.HTTPException):
            exchange.stream.finish(error)
        return "cut"
    return "ok" if exchange.finished else "cut"


def serve(
    app: Asgi,
    *,
    api: RuntimeApi | None = None,
    around: Around | None = None,
    invocations: int | None = None,
) -> None:
    """The runtime loop: next event, run the app, stream the answer; ``invocations`` stops it (tests)."""
    api = api or RuntimeApi()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    served = 0
    try:
        while invocations is None or served < invocations:
            invocation = api.next()
            scope = around(invocation.event, invocation.context) if around else contextlib.nullcontext()
            with scope:
                loop.run_until_complete(_invoke(app, api, invocation))
            served += 1
    finally:
        loop.close()


def load(dotted: str) -> Any:
    """``package.module.attr`` (or ``package.module:attr``) -> the object."""
    module_name, _, attr = dotted.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


@contextlib.contextmanager
def _on_path() -> Iterator[None]:
    root = os.environ.get("LAMBDA_TASK_ROOT")
    if root and root not in sys.path:
        sys.path.insert(0, root)  # the function's code, as the managed runtime puts it first
    yield


def main(argv: list[str] | None = None) -> None:
    """``python -m daarion_common.lambda_streaming APP [--around HOOK]`` (the image's EntryPoint + Command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m daarion_common.lambda_streaming package.module.app [--around hook]")
    around_path = None
    if "--around" in args:
        at = args.index("--around")
        around_path = args[at + 1]
        del args[at : at + 2]
    api = RuntimeApi()
    try:
        with _on_path():
            app = load(args[0])
            around = load(around_path) if around_path else None
    except Exception as exc:  # reported to Lambda, then exit: Lambda starts a fresh environment
        traceback.print_exc()
        api.init_error(exc)
        raise SystemExit(1) from exc
    serve(app, api=api, around=around)


if __name__ == "__main__":
    main()
