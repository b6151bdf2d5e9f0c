"""The local stack answers like API Gateway and Lambda at their limits (a real `python -m devstack` in a
subprocess, on free ports): oversized requests, an integration past the gateway's deadline, a function
past its own timeout — each with AWS's status and body (devstack/limits.py, the README's table).

The timeouts are shortened (DEVSTACK_API_TIMEOUT_SECONDS=3, DEVSTACK_FUNCTION_TIMEOUT_SECONDS=8) so
nothing waits 30 s. Bursts, crashes and restarts are in test_local_stack.py, on default settings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from devstack.launcher import LocalStack, temporary_local_stack, wait_for
from tests.fixtures.llm_proxy import proxy_body

pytestmark = pytest.mark.slow
SECRET = {"X-Internal-Secret": "dev-secret-token"}
API_TIMEOUT_S = 3
FUNCTION_TIMEOUT_S = 8
MEMORY_QUERY = {"agent_id": "sofia", "microdao_id": "dao-42", "query": "що нового?", "limit": 3}


class _SlowModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that takes far longer than any deadline to answer."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(25)
        try:
            self.send_response(500)
            self.end_headers()
        except OSError:
            pass


@pytest.fixture(scope="module")
def slow_model() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowModel)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stack(slow_model: str) -> Iterator[LocalStack]:
    env = {
        "DEVSTACK_API_TIMEOUT_SECONDS": str(API_TIMEOUT_S),
        "DEVSTACK_FUNCTION_TIMEOUT_SECONDS": str(FUNCTION_TIMEOUT_S),
        "DEVSTACK_MAX_CONTAINERS": "4",
        "LOCAL_LLM_BASE_URL": slow_model,
        "OPENAI_API_KEY": "",
        "DEEPSEEK_API_KEY": "",
        "LLM_PROXY_CONFIG": "",
    }
    with temporary_local_stack("daarion-test-limits-", env=env) as running:
        yield running


def _function(stack: LocalStack, name: str) -> dict[str, Any]:
    return stack.status()["functions"][name]


def test_a_7_mb_body_gets_the_413_aws_gives(stack: LocalStack) -> None:
    body = proxy_body(agent="big")
    body["messages"][1]["content"] = "x" * (7 * 1024 * 1024)
    for base in (stack.gateway, stack.llm_proxy):
        response = httpx.post(f"{base}/internal/llm/proxy", json=body, headers=SECRET, timeout=60)
        assert response.status_code == 413
        assert response.json() == {"message": "Request Entity Too Large"}
    # larger than the HTTP API's own 10 MB: refused before any function is involved
    huge = httpx.post(f"{stack.gateway}/internal/llm/proxy", content=b"x" * (11 * 1024 * 1024), headers=SECRET)
    assert huge.status_code == 413 and huge.json() == {"message": "Request Entity Too Large"}
    # Lambda's own answer, on the invoke API
    direct = httpx.post(f"{stack.gateway}/_local/invoke/LlmProxyFunction", json=body, timeout=60)
    assert direct.status_code == 413
    assert direct.json()["error_type"] == "RequestEntityTooLargeException"
    assert direct.json()["payload"]["message"] == (
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    )


def test_a_call_past_the_api_gateway_deadline_gets_the_gateway_error(stack: LocalStack) -> None:
    started = _function(stack, "LlmProxyFunction")["invocations"]
    response = httpx.post(
        f"{stack.gateway}/internal/llm/proxy",
        json=proxy_body("dagi-local-8b", agent="slow"),
        headers=SECRET,
        timeout=60,
    )
    assert response.status_code == 503
    assert response.json() == {"message": "Service Unavailable"}
    assert response.headers["apigw-requestid"]
    # as in AWS the function runs on after the gateway gave up, until its own timeout stops it
    wait_for(
        lambda: _function(stack, "LlmProxyFunction")["invocations"] > started, FUNCTION_TIMEOUT_S + 30, "the invocation"
    )


def test_the_function_timeout_stops_the_invocation(stack: LocalStack) -> None:
    """A database that stops answering (every PostgreSQL process frozen) holds a memory query on its open
    connection until the function's timeout: Lambda's error, the container replaced, the next call served."""
    httpx.post(f"{stack.memory}/internal/agent-memory/query", json=MEMORY_QUERY, headers=SECRET, timeout=30)
    before = _function(stack, "MemoryFunction")
    postmaster = psutil.Process(stack.status()["postgres"]["pid"])
    frozen = [postmaster, *postmaster.children(recursive=True)]
    event = json.loads((Path(__file__).parents[1] / "events" / "apigw_v2_post_memory_query.json").read_text())
    event["body"] = json.dumps(MEMORY_QUERY)
    for process in frozen:
        process.suspend()
    try:
        result = httpx.post(f"{stack.gateway}/_local/invoke/MemoryFunction", json=event, timeout=60).json()
    finally:
        for process in frozen:
            process.resume()
    assert result["function_error"] is True
    assert result["error_type"] == "Sandbox.Timedout"
    assert f"Task timed out after {FUNCTION_TIMEOUT_S:.2f} seconds" in result["payload"]["errorMessage"]
    after = _function(stack, "MemoryFunction")
    assert after["timed_out"] == before["timed_out"] + 1
    # the next invocation runs in a fresh container (invoked directly: its cold start may exceed the 3 s deadline)
    again = httpx.post(f"{stack.gateway}/_local/invoke/MemoryFunction", json=event, timeout=60).json()
    assert again["function_error"] is False and again["cold_start"] is True
    assert again["payload"]["statusCode"] == 200
