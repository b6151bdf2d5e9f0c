"""The streaming runtime (daarion_common.lambda_streaming) against a Runtime API on loopback.

The Runtime API here (devstack.runtime_api) is real HTTP: it hands out Function URL events (payload 2.0),
reads the runtime's chunked POST chunk by chunk and records headers, trailers and errors. Chunk-by-chunk
delivery is shown by the order of events, never by a clock: the app writes its second chunk only once
the test has *received* the first at the Runtime API, so a runtime that buffered would never get there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from daarion_common import lambda_streaming
from devstack.runtime_api import Chunk, End, RuntimeApi, split_prelude
from tests.conftest import ROOT

GATE_TIMEOUT_S = 20  # how long the app waits for the test; only reached if chunks were buffered


def function_url_event(method: str = "GET", path: str = "/", body: str | None = None, **more: Any) -> dict[str, Any]:
    """A Function URL event as AWS documents it (payload format 2.0, routeKey $default)."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": more.pop("query", ""),
        "headers": {
            "host": "abc123.lambda-url.us-east-1.on.aws",
            "x-forwarded-proto": "https",
            **more.pop("headers", {}),
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "t",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2026:19:03:58 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
        **more,
    }
    if body is not None:
        event["body"] = body
    return event


class GatedApp:
    """A raw ASGI app: /stream writes a chunk, waits for the test's go-ahead, writes the next."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seen_context: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        path = scope["path"]
        if path == "/boom":
            raise RuntimeError("failed before answering")
        headers = [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"x-custom", b"yes")]
        if path == "/echo":
            self.seen_context = scope["aws.context"]
            echo = {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "body": message["body"].decode(),
                "cookie": dict(scope["headers"]).get(b"cookie", b"").decode(),
                "remaining_ms": scope["aws.context"].get_remaining_time_in_millis(),
                "request_id": scope["aws.event"]["requestContext"]["requestId"],
            }
            raw = json.dumps(echo).encode()
            await send(
                {"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": raw})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"one;", "more_body": True})
        loop = asyncio.get_running_loop()
        passed = await loop.run_in_executor(None, self.gate.wait, GATE_TIMEOUT_S)
        await send({"type": "http.response.body", "body": b"two(gate passed);" if passed else b"two(buffered!);",
                    "more_body": True})  # fmt: skip
        if path == "/fail":
            raise ValueError("the upstream broke off")
        await send({"type": "http.response.body", "body": b"three", "more_body": False})


@pytest.fixture
def runtime() -> Any:
    api = RuntimeApi()
    yield api
    api.close()


def _serve(app: Any, api: RuntimeApi, invocations: int) -> threading.Thread:
    client = lambda_streaming.RuntimeApi(api.address)
    thread = threading.Thread(
        target=lambda_streaming.serve, args=(app,), kwargs={"api": client, "invocations": invocations}, daemon=True
    )
    thread.start()
    return thread


def test_the_body_reaches_lambda_chunk_by_chunk_after_the_prelude(runtime: RuntimeApi) -> None:
    app = GatedApp()
    thread = _serve(app, runtime, invocations=2)
    record = runtime.invoke(function_url_event(path="/stream"), timeout_s=30)
    timeline: list[str] = []
    buffer = b""
    prelude = None
    for item in record.iter_events(timeout_s=30):
        if isinstance(item, Chunk):
            buffer += item.data
            if prelude is None and (split := split_prelude(buffer)) is not None:
                prelude, buffer = split
                timeline.append("prelude")
            if b"one;" in buffer and "one" not in timeline:
                timeline.append("one")
                app.gate.set()  # only now may the app write its second chunk
            if b"two" in buffer and "two" not in timeline:
                timeline.append("two")
        else:
            timeline.append(f"end:{item.outcome}")
    assert timeline == ["prelude", "one", "two", "end:ok"], timeline
    assert buffer == b"one;two(gate passed);three"
    assert prelude == {
        "statusCode": 200,
        "headers": {"content-type": "text/plain", "x-custom": "yes"},
        "cookies": ["a=1"],
    }
    headers = record.request_headers
    assert headers["lambda-runtime-function-response-mode"] == "streaming"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["content-type"] == "application/vnd.awslambda.http-integration-response"
    assert {t.strip() for t in headers["trailer"].split(",")} == {
        "Lambda-Runtime-Function-Error-Type",
        "Lambda-Runtime-Function-Error-Body",
    }
    assert runtime.protocol_errors == []

    # the next invocation is served by the same runtime, with the event's own request and deadline
    event = function_url_event("POST", "/echo", body='{"q": "привіт"}', query="a=1&b=2", cookies=["s=1", "t=2"])
    second = runtime.invoke(event, timeout_s=12)
    raw = b"".join(i.data for i in second.iter_events(timeout_s=30) if isinstance(i, Chunk))
    meta, body = split_prelude(raw)  # type: ignore[misc]
    echo = json.loads(body)
    assert meta["statusCode"] == 201
    assert echo["method"] == "POST" and echo["path"] == "/echo" and echo["query"] == "a=1&b=2"
    assert echo["body"] == '{"q": "привіт"}' and echo["cookie"] == "s=1; t=2"
    assert echo["request_id"] == "req-1"
    assert 0 < echo["remaining_ms"] <= 12_000  # Lambda-Runtime-Deadline-Ms, as get_remaining_time_in_millis()
    assert app.seen_context.aws_request_id == second.request_id
    assert app.seen_context.invoked_function_arn == runtime.function_arn
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_failure_mid_stream_ends_with_the_error_trailers_and_the_runtime_serves_on(runtime: RuntimeApi) -> None:
    app = GatedApp()
    app.gate.set()
    thread = _serve(app, runtime, invocations=3)
    record = runtime.invoke(function_url_event(path="/fail"), timeout_s=30)
    items = list(record.iter_events(timeout_s=30))
    body = b"".join(i.data for i in items if isinstance(i, Chunk))
    end = items[-1]
    assert isinstance(end, End) and end.outcome == "cut"
    assert split_prelude(body)[1] == b"one;two(gate passed);"  # type: ignore[index]
    assert end.error_type == "Runtime.StreamError"
    assert end.error is not None and end.error["errorType"] == "ValueError"
    assert end.error["errorMessage"] == "the upstream broke off"
    raw_trailer = record.trailers["lambda-runtime-function-error-body"]
    assert json.loads(base64.b64decode(raw_trailer))["errorType"] == "ValueError"  # base64 JSON, as documented
    assert runtime.protocol_errors == []

    # a failure before the first byte is an invocation error (nothing was streamed) ...
    failed = runtime.invoke(function_url_event(path="/boom"), timeout_s=30)
    (only,) = list(failed.iter_events(timeout_s=30))
    assert isinstance(only, End) and only.outcome == "error"
    assert only.error_type == "Function.Unhandled" and only.error["errorMessage"] == "failed before answering"  # type: ignore[index]

    # ... and the runtime goes on to the next event
    after = runtime.invoke(function_url_event(path="/stream"), timeout_s=30)
    items = list(after.iter_events(timeout_s=30))
    assert isinstance(items[-1], End) and items[-1].outcome == "ok"
    assert split_prelude(b"".join(i.data for i in items if isinstance(i, Chunk)))[1].endswith(b"three")  # type: ignore[index]
    thread.join(timeout=10)


def test_an_app_that_cannot_be_imported_is_an_init_error(runtime: RuntimeApi) -> None:
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": runtime.address, "PYTHONPATH": str(ROOT / "functions")}
    proc = subprocess.run(
        [sys.executable, "-m", "daarion_common.lambda_streaming", "no_such_function.app.app"],
        env=env, capture_output=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1
    assert len(runtime.init_errors) == 1
    assert runtime.init_errors[0]["errorType"] == "ModuleNotFoundError"
