"""daarion_client against a scripted loopback HTTP server: retries, Retry-After, typed errors, deadlines."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from daarion_client import (
    AsyncMemoryClient,
    ConnectionFailed,
    DeadlineExceeded,
    InvalidRequest,
    LlmProxyClient,
    MemoryClient,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    ToolcoreClient,
    Unauthorized,
    UpstreamError,
)


class Scripted:
    """Answers each request with the next scripted (status, body, headers, delay); records requests."""

    def __init__(self) -> None:
        self.script: list[tuple[int, Any, dict[str, str], float]] = []
        self.requests: list[dict[str, Any]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                scripted.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(body) if body else None,
                    }
                )
                status, payload, headers, delay = scripted.script.pop(0) if scripted.script else (200, {}, {}, 0.0)
                time.sleep(delay)
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def then(self, status: int, body: Any, headers: dict[str, str] | None = None, delay: float = 0.0) -> Scripted:
        self.script.append((status, body, headers or {}, delay))
        return self


@pytest.fixture
def server() -> Iterator[Scripted]:
    s = Scripted()
    yield s
    s.server.shutdown()


FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.2)
REPLY = {
    "content": "Привіт!",
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    "provider": "offline",
}


def test_secret_header_and_contract_body(server):
    server.then(200, REPLY)
    client = LlmProxyClient(server.url, secret="s3cr3t", retry=FAST)
    result = client.chat(
        "gpt-4.1-mini", [{"role": "user", "content": "hi"}], agent_id="sofia", microdao_id="dao", max_tokens=9
    )
    assert result.content == "Привіт!" and result.usage.total_tokens == 7
    sent = server.requests[0]
    assert sent["path"] == "/internal/llm/proxy" and sent["headers"]["X-Internal-Secret"] == "s3cr3t"
    assert sent["json"]["metadata"] == {"agent_id": "sofia", "microdao_id": "dao", "channel_id": None}
    assert sent["json"]["max_tokens"] == 9


def test_429_is_retried_after_retry_after(server):
    server.then(429, {"error": {"code": "rate_limited", "message": "agent rpm"}}, {"Retry-After": "0.3"}).then(
        200, REPLY
    )
    began = time.monotonic()
    result = LlmProxyClient(server.url, retry=FAST).chat(
        "m", [{"role": "user", "content": "x"}], agent_id="a", microdao_id="d"
    )
    assert result.content == "Привіт!" and len(server.requests) == 2
    assert time.monotonic() - began >= 0.2  # waited (capped by max_backoff_s), did not hammer


def test_exhausted_retries_raise_typed_errors_with_the_service_code(server):
    for _ in range(3):
        server.then(429, {"error": {"code": "rate_limited", "message": "agent rpm"}}, {"Retry-After": "0"})
    with pytest.raises(RateLimited) as err:
        LlmProxyClient(server.url, retry=FAST).chat(
            "m", [{"role": "user", "content": "x"}], agent_id="a", microdao_id="d"
        )
    assert err.value.code == "rate_limited" and err.value.retry_after == 0.0 and len(server.requests) == 3
    for _ in range(3):
        server.then(502, {"error": {"code": "all_providers_failed", "message": "openai: 500"}})
    with pytest.raises(UpstreamError) as up:
        LlmProxyClient(server.url, retry=FAST).chat(
            "m", [{"role": "user", "content": "x"}], agent_id="a", microdao_id="d"
        )
    assert up.value.code == "all_providers_failed"


@pytest.mark.parametrize(
    ("status", "error", "body"),
    [
        (401, Unauthorized, {"error": {"code": "unauthorized", "message": "Invalid X-Internal-Secret header."}}),
        (
            422,
            InvalidRequest,
            {"error": {"code": "invalid_request", "message": "limit", "fields": [{"field": "limit", "message": "x"}]}},
        ),
    ],
)
def test_client_errors_are_not_retried(server, status, error, body):
    server.then(status, body)
    with pytest.raises(error) as err:
        MemoryClient(server.url, retry=FAST).query("hi", agent_id="a", microdao_id="d", limit=5)
    assert len(server.requests) == 1 and err.value.code == body["error"]["code"]
    if status == 422:
        assert err.value.fields == [{"field": "limit", "message": "x"}]


def memory_item(memory_id: str, content: str) -> dict[str, Any]:
    meta = {"source": "conversation", "timestamp": "2025-01-01T10:00:00+00:00", "new_key": 1}
    return {"id": memory_id, "kind": "conversation", "tier": "short", "score": 0.9, "content": content, "meta": meta}


def test_503_then_success_and_memory_items(server):
    items = [memory_item("m1", "Проєкт X запущено")]
    server.then(503, {"message": "Service Unavailable"}).then(200, {"items": items, "results": items, "later": True})
    got = MemoryClient(server.url, retry=FAST).query("проєкт X", agent_id="a", microdao_id="d")
    assert [m.content for m in got] == ["Проєкт X запущено"]
    assert got[0].meta.new_key == 1  # a field added by a newer service is kept


def test_results_only_answers_are_read_too(server):
    server.then(200, {"results": [memory_item("m2", "legacy")]})
    assert MemoryClient(server.url, retry=FAST).query("q", agent_id="a", microdao_id="d")[0].id == "m2"


def test_a_request_the_contract_refuses_is_not_sent(server):
    with pytest.raises(InvalidRequest) as err:
        MemoryClient(server.url, retry=FAST).query("hi", agent_id="agent:sofia", microdao_id="microdao:7", limit=0)
    assert server.requests == [] and err.value.status == 422 and err.value.code == "invalid_request"
    assert [f["field"] for f in err.value.fields] == ["limit"]


def test_unreachable_service_is_connection_failed():
    with pytest.raises(ConnectionFailed) as err:
        MemoryClient("http://127.0.0.1:9", retry=FAST).store("x", agent_id="a", microdao_id="d")
    assert err.value.service == "memory"


def test_deadline_cuts_a_slow_answer(server):
    server.then(200, REPLY, delay=1.0)
    with pytest.raises(DeadlineExceeded):
        LlmProxyClient(server.url, retry=FAST).chat(
            "m", [{"role": "user", "content": "x"}], agent_id="a", microdao_id="d", deadline=time.monotonic() + 0.2
        )


def test_tool_calls_carry_an_idempotency_key_reused_across_retries(server):
    server.then(500, {"error": {"code": "internal", "message": "boom"}}).then(
        200, {"ok": True, "result": {"n": 1}, "tool_id": "t", "latency_ms": 1.0}
    )
    result = ToolcoreClient(server.url, retry=FAST).call("projects.list", {"x": 1}, agent_id="a", microdao_id="d")
    assert result.ok and result.result == {"n": 1}
    keys = {r["json"]["idempotency_key"] for r in server.requests}
    assert len(server.requests) == 2 and len(keys) == 1 and None not in keys


def test_a_tools_own_failure_is_a_result_not_an_exception(server):
    server.then(
        200,
        {
            "ok": False,
            "result": None,
            "error": {"code": "timeout", "message": "slow"},
            "tool_id": "t",
            "latency_ms": 1.0,
        },
    )
    result = ToolcoreClient(server.url, retry=FAST).call("t", {}, agent_id="a", microdao_id="d")
    assert not result.ok and result.error.code == "timeout"


def test_async_client_retries_too(server):
    stored = {"ok": True, "id": "mem-1", "duplicate": False, "tier": "short", "indexed": "inline"}
    server.then(500, {"error": {"code": "internal", "message": "x"}}).then(200, stored)

    async def go() -> str:
        async with AsyncMemoryClient(server.url, retry=FAST) as client:
            return await client.store({"user_message": "a", "agent_reply": "b"}, agent_id="a", microdao_id="d")

    assert asyncio.run(go()) == "mem-1" and len(server.requests) == 2
    server.then(500, {}).then(500, {}).then(500, {})
    with pytest.raises(ServiceUnavailable):
        asyncio.run(go())


def test_base_urls_come_from_agent_runtime_environment(monkeypatch):
    monkeypatch.setenv("LLM_PROXY_URL", "http://proxy.internal:7007/")
    monkeypatch.setenv("AGENT_MEMORY_URL", "http://memory.internal:7008")
    monkeypatch.setenv("TOOLCORE_URL", "http://tools.internal:7009")
    assert LlmProxyClient().base_url == "http://proxy.internal:7007"
    assert MemoryClient().base_url == "http://memory.internal:7008"
    assert ToolcoreClient().base_url == "http://tools.internal:7009"
