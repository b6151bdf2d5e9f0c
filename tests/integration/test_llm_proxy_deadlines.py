"""The API path's deadline, on the local stack (a real `python -m devstack`): a call slower than the deadline
gets the proxy's own 504 `upstream_timeout` before the gateway's cut (which would answer 503 "Service
Unavailable"), the upstream sees its connection closed (nothing more is generated and paid for), and exactly
one usage event records the call, its reservation kept (the provider may have billed what it generated).

Deadlines are shortened so nothing waits 30 s: the gateway cuts at 12 s (DEVSTACK_API_TIMEOUT_SECONDS), the
proxy's API path ends calls at 3 s (LLM_PROXY_API_DEADLINE_S; the models' timeouts fit it, as the cold start
requires).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import yaml

from devstack.launcher import LocalStack, temporary_local_stack, wait_for
from llm_proxy.config import DEFAULT_PATH
from tests.fixtures.llm_proxy import Reply, ScriptedLLM, proxy_body

pytestmark = pytest.mark.slow
SECRET = {"X-Internal-Secret": "dev-secret-token"}
GATEWAY_CUT_S = 12
API_DEADLINE_S = 3


class HangingModel:
    """An OpenAI-compatible server that never answers: it reads the request, then watches the connection
    and records when the client closes it."""

    def __init__(self) -> None:
        self.requests = 0
        self.disconnects = 0
        self.lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with model.lock:
                    model.requests += 1
                conn: socket.socket = self.connection
                give_up = time.monotonic() + 60
                while time.monotonic() < give_up:
                    readable, _, _ = select.select([conn], [], [], 0.1)
                    if readable:
                        try:
                            closed = conn.recv(1, socket.MSG_PEEK) == b""
                        except OSError:
                            closed = True
                        if closed:
                            with model.lock:
                                model.disconnects += 1
                            self.close_connection = True
                            return
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hanging() -> Iterator[HangingModel]:
    model = HangingModel()
    yield model
    model.close()


@pytest.fixture(scope="module")
def fast() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM("openai", Reply.text("on time"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(hanging: HangingModel, fast: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = tmp_path_factory.mktemp("deadlines") / "routing.json"
    routing = yaml.safe_load(DEFAULT_PATH.read_text())
    for model in routing["models"].values():
        if not model.get("long_path_only"):
            model["timeout_s"] = min(model.get("timeout_s", 25), API_DEADLINE_S)  # fit the shortened deadline
    config.write_text(json.dumps(routing))
    env = {
        "DEVSTACK_API_TIMEOUT_SECONDS": str(GATEWAY_CUT_S),
        "LLM_PROXY_API_DEADLINE_S": str(API_DEADLINE_S),
        "LLM_PROXY_CONFIG": str(config),
        "LOCAL_LLM_BASE_URL": hanging.base_url,  # dagi-local-8b never answers
        "OPENAI_BASE_URL": fast.base_url,  # gpt-4.1-mini (its fallback) answers at once
        "OPENAI_API_KEY": "sk-test-deadlines-000000000000",
        "DEEPSEEK_API_KEY": "",
    }
    with temporary_local_stack("daarion-test-deadlines-", env=env) as running:
        yield running


def _usage_events(stack: LocalStack, agent: str) -> list[dict[str, Any]]:
    """The raw usage events the recorder stored for ``agent`` (the ledger keeps each one whole)."""
    ddb = stack.client("dynamodb")
    table = next(t for t in ddb.list_tables()["TableNames"] if "usage" in t.lower())
    items = ddb.scan(TableName=table)["Items"]
    events = [json.loads(i["body"]["S"]) for i in items if i["pk"]["S"].startswith("EVENT#")]
    return [e for e in events if e["agent_id"] == agent]


def test_a_call_slower_than_the_api_deadline_gets_our_504_before_the_gateway_cut(
    stack: LocalStack, hanging: HangingModel
) -> None:
    agent = f"agent:slow-{uuid.uuid4().hex[:6]}"
    # the container's first call loads the provider SDK: make it now, so the timed call measures the deadline
    warm = httpx.post(f"{stack.gateway}/internal/llm/proxy", json=proxy_body(agent="warm"), headers=SECRET, timeout=60)
    assert warm.status_code == 200, warm.text

    response = httpx.post(
        f"{stack.gateway}/internal/llm/proxy",
        json=proxy_body("dagi-local-8b", agent=agent, dao="microdao:7"),
        headers=SECRET,
        timeout=60,
    )
    # our body, not the gateway's {"message": "Service Unavailable"} (503) at its cut
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout"
    assert [p["error"] for p in error["providers"]] == ["timed out", "call deadline reached"]
    assert hanging.requests >= 1
    # the proxy closed the upstream connection when it gave up: the provider stops generating
    wait_for(lambda: hanging.disconnects == hanging.requests, 30, "the upstream to see the disconnect")

    wait_for(lambda: len(_usage_events(stack, agent)) >= 1, 60, "the usage event to be recorded")
    time.sleep(2)  # a second event, if one were sent, would be recorded by now (the recorder polls every second)
    (event,) = _usage_events(stack, agent)
    assert (event["status"], event["error_code"]) == ("error", "upstream_timeout")
    assert event["charge"] == "reserved"  # the provider may have billed what it generated
    elapsed = response.elapsed.total_seconds()
    print(f"\n504 after {elapsed:.2f} s (API deadline {API_DEADLINE_S} s, gateway cut {GATEWAY_CUT_S} s)")
