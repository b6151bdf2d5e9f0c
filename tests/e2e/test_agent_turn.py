"""Agent turns end to end: daarion_client.run_turn against the whole local stack over real HTTP.

The model is a scripted OpenAI-compatible loopback server (the LLM Proxy's `local` provider, reached
through the real `openai` SDK inside the proxy). Toolcore calls the local stack's demo projects
service. A second stack runs with a failing tool target and a slow model for the degraded cases.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from daarion_client import AsyncLlmProxyClient, AsyncMemoryClient, AsyncToolcoreClient, MemoryClient
from daarion_client.agent import (
    MODEL_UNAVAILABLE_REPLY,
    Blueprint,
    ContextTool,
    IncomingMessage,
    Services,
    TurnResult,
    run_turn,
)
from devstack.launcher import LocalStack, start_local_stack, wait_for
from tests.fixtures.llm_proxy import Reply, ScriptedLLM

pytestmark = pytest.mark.slow

CALL_PROJECTS = "[[call projects.list]]"
CALL_TASK = "[[call task.create]]"
TOOL_DAO = "microdao:e2e"  # the microDAO the scripted model's tool calls name (Toolcore checks it is the caller's)
DAO_MARK = re.compile(r"\[\[dao (\S+)\]\]")  # "[[dao microdao:x]]" in a message: the tool calls name that one
# The shipped registry lets only named agents read projects (agent:sofia, agent:pm, agent:cto): tests whose
# turn uses a tool run as agent:sofia (7 model calls in this stack). The others keep an agent of their
# own, so the proxy's per-agent limit (10 calls a minute) is not shared by the whole module.
SOFIA_ID = "agent:sofia"


def responder(body: dict[str, Any]) -> Reply:
    """The scripted model: calls a tool when the user message asks for it, then answers from its result."""
    messages = body["messages"]
    tool_results = [m for m in messages if m["role"] == "tool"]
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    if tool_results:
        return Reply.text(f"From the tool: {tool_results[-1]['content']}")
    mark = DAO_MARK.search(user)
    dao = mark.group(1) if mark else TOOL_DAO
    if CALL_PROJECTS in user:
        return Reply.tool_call("projects__list", {"microdao_id": dao, "status": "all"})
    if CALL_TASK in user:
        return Reply.tool_call("task__create", {"microdao_id": dao, "project_id": "demo-proj-1", "title": "x"})
    return Reply.text(f"Plain answer to: {user}")


class FailingTarget:
    """A tool target that always answers 500."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'{"error": "the projects service is down"}'
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host_port = f"127.0.0.1:{self.server.server_address[1]}"


def _warm(stack: LocalStack) -> None:
    """Initialise each function once (the embedding model, the first database connection, imports), as
    a warm Lambda container is: these tests are about what a turn does within its deadline, not about
    cold starts, which `make bench` measures."""
    headers = {"X-Internal-Secret": "dev-secret-token"}
    who = {"agent_id": "agent:warm-up", "microdao_id": "microdao:warm-up"}
    httpx.post(f"{stack.memory}/internal/agent-memory/query", json={**who, "query": "warm up", "limit": 1},
               headers=headers, timeout=120).raise_for_status()  # fmt: skip
    httpx.get(f"{stack.toolcore}/internal/tools", params=who, headers=headers, timeout=120).raise_for_status()
    httpx.get(f"{stack.llm_proxy}/internal/llm/models", headers=headers, timeout=120).raise_for_status()


def _stack(env: dict[str, str]) -> Iterator[LocalStack]:
    state = Path(tempfile.mkdtemp(prefix="daarion-test-agent-"))
    # one container per function: a turn fans out to one function in parallel and has a 5 s deadline,
    # which a second container's cold start would eat (parallel containers: tests/integration/test_local_stack.py)
    stack = start_local_stack(state, env={"DEVSTACK_SCHEDULE_SECONDS": "3600", "DEVSTACK_MAX_CONTAINERS": "1", **env})
    try:
        _warm(stack)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM("local", default=responder)
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(model: ScriptedLLM) -> Iterator[LocalStack]:
    yield from _stack({"LOCAL_LLM_BASE_URL": model.base_url})


def services(stack: LocalStack, memory_url: str | None = None) -> Services:
    return Services(
        AsyncLlmProxyClient(stack.llm_proxy, timeout=30),
        AsyncMemoryClient(memory_url or stack.memory, timeout=10),
        AsyncToolcoreClient(stack.toolcore, timeout=10),
    )


def sofia(**over: Any) -> Blueprint:
    values: dict[str, Any] = {
        "agent_id": f"agent:sofia-{uuid.uuid4().hex[:6]}",  # no tools: see SOFIA_ID
        "system_prompt": "You are Sofia.",
        "model": "dagi-local-8b",
        "allowed_tools": ("projects.list",),
        "context_tools": (ContextTool("projects.list", {"microdao_id": "{microdao_id}", "status": "active"}),),
    }
    values.update(over)
    return Blueprint(**values)


def turn(stack: LocalStack, blueprint: Blueprint, text: str, *, dao: str, memory_url: str | None = None,
         deadline_s: float = 5.0) -> TurnResult:  # fmt: skip
    async def go() -> TurnResult:
        svc = services(stack, memory_url)
        try:
            return await run_turn(blueprint, IncomingMessage(dao, "general", text), svc, deadline_s=deadline_s)
        finally:
            await svc.aclose()

    return asyncio.run(go())


def steps(result: TurnResult, name: str) -> list[Any]:
    return [s for s in result.trace if s.name == name]


def test_memory_from_an_earlier_turn_reaches_the_next_prompt(stack, model):
    agent, dao = sofia(context_tools=()), f"dao-{uuid.uuid4().hex[:6]}"
    first = turn(stack, agent, "Запам'ятай, будь ласка: кодове слово нашого проєкту — гречаник-42.", dao=dao)
    assert first.stored_memory_id and not first.failures
    second = turn(stack, agent, "Яке кодове слово нашого проєкту?", dao=dao)
    assert "гречаник-42" in second.prompt[0]["content"]
    sent = model.chat_requests()[-1].body["messages"][0]["content"]
    assert "гречаник-42" in sent  # it really reached the model
    assert any(item["id"] == first.stored_memory_id for item in steps(second, "memory.query")[0].detail["items"])


def test_a_context_tool_result_is_in_the_prompt(stack):
    result = turn(stack, sofia(agent_id=SOFIA_ID), "What is going on?", dao=TOOL_DAO)
    assert steps(result, "tool:projects.list")[0].status == "ok"
    assert "Community garden (demo)" in result.prompt[0]["content"]
    assert "Old website (demo)" not in result.prompt[0]["content"]  # the context tool asked for active ones


def test_a_tool_call_from_the_model_runs_in_toolcore_and_the_answer_uses_it(stack, model):
    result = turn(
        stack, sofia(agent_id=SOFIA_ID, context_tools=()), f"List every project {CALL_PROJECTS}", dao=TOOL_DAO
    )
    tool_steps = [s for s in steps(result, "tool:projects.list") if s.detail.get("requested_by_model")]
    assert tool_steps and tool_steps[0].status == "ok"
    assert "Old website (demo)" in result.reply  # only in the tool's answer (status=all), echoed by the model
    llm_steps = steps(result, "llm")
    assert [s.detail["tool_calls"] for s in llm_steps] == [1, 0]
    offered = model.chat_requests()[-2].body.get("tools") or []
    assert [t["function"]["name"] for t in offered] == ["projects__list"]


def test_a_tool_the_agent_may_not_call_is_refused_and_traced(stack, model):
    # agent:sofia may create tasks in the registry, but this blueprint does not let her: the turn refuses
    result = turn(stack, sofia(agent_id=SOFIA_ID, context_tools=()), f"Create a task {CALL_TASK}", dao=TOOL_DAO)
    refused = steps(result, "tool:task.create")
    assert refused and refused[0].status == "refused" and "permission_denied" in refused[0].error
    tool_message = next(m for m in model.chat_requests()[-1].body["messages"] if m["role"] == "tool")
    assert json.loads(tool_message["content"])["error"]["code"] == "permission_denied"
    assert "permission_denied" in result.reply


def test_usage_of_the_turn_appears_in_the_usage_api(stack):
    agent, dao = sofia(agent_id=SOFIA_ID), f"microdao:usage-{uuid.uuid4().hex[:6]}"  # this turn's usage alone
    result = turn(stack, agent, f"List every project {CALL_PROJECTS} [[dao {dao}]]", dao=dao)
    llm_calls = len([s for s in steps(result, "llm") if s.status == "ok"])
    tokens = result.prompt_tokens + result.completion_tokens

    def usage() -> dict[str, Any] | None:
        body = httpx.get(
            f"{stack.llm_proxy}/internal/llm/usage",
            params={"agent_id": agent.agent_id, "microdao_id": dao, "group_by": "model"},
            headers={"X-Internal-Secret": "dev-secret-token"}, timeout=10,
        ).json()  # fmt: skip
        return body if body["totals"]["requests"] >= llm_calls and body["totals"]["tool_calls"] >= 2 else None

    body = wait_for(usage, 60, "the turn's usage to reach the ledger")
    assert body["totals"]["requests"] == llm_calls
    assert body["totals"]["prompt_tokens"] + body["totals"]["completion_tokens"] == tokens
    assert body["totals"]["tool_calls"] == 2  # the context tool and the model's tool call


def test_the_exchange_is_stored_and_retrievable(stack):
    agent, dao = sofia(context_tools=()), f"dao-{uuid.uuid4().hex[:6]}"
    result = turn(stack, agent, "Нагадай мені про зустріч ради у четвер", dao=dao)
    with MemoryClient(stack.memory) as memory:
        items = memory.query("зустріч ради", agent_id=agent.agent_id, microdao_id=dao, channel_id="general")
    stored = next(i for i in items if i.id == result.stored_memory_id)
    assert "зустріч ради у четвер" in stored.content and result.reply in stored.content


# ------------------------------------------------------------------------- degraded dependencies


@pytest.fixture(scope="module")
def failing_target() -> Iterator[FailingTarget]:
    target = FailingTarget()
    yield target
    target.server.shutdown()


@pytest.fixture(scope="module")
def degraded(failing_target: FailingTarget) -> Iterator[tuple[LocalStack, ScriptedLLM]]:
    slow = ScriptedLLM("slow-local", default=Reply.slow(8.0, Reply.text("too late")))
    env = {
        "LOCAL_LLM_BASE_URL": slow.base_url,
        "PROJECTS_API_URL": f"http://{failing_target.host_port}",
        "TOOL_HOST_ALLOWLIST": failing_target.host_port,
    }
    try:
        for stack in _stack(env):
            yield stack, slow
    finally:
        slow.close()


def test_a_failing_tool_is_reported_and_the_turn_still_answers(degraded):
    stack, _ = degraded
    result = turn(stack, sofia(agent_id=SOFIA_ID, model="gpt-4.1-mini"), "What is going on?", dao=TOOL_DAO)  # offline
    failed = steps(result, "tool:projects.list")[0]
    assert failed.status == "error" and "upstream_error" in failed.error
    assert "Live data from projects.list is unavailable" in result.prompt[0]["content"]
    assert result.reply and result.reply != MODEL_UNAVAILABLE_REPLY


def test_an_unreachable_memory_is_reported_and_the_turn_still_answers(degraded):
    stack, _ = degraded
    result = turn(stack, sofia(model="gpt-4.1-mini", context_tools=()), "Hi!", dao=TOOL_DAO,
                  memory_url="http://127.0.0.1:9")  # fmt: skip
    assert steps(result, "memory.query")[0].status == "error"
    assert steps(result, "memory.store")[0].status == "error"
    assert "Memory is unavailable" in result.prompt[0]["content"]
    assert steps(result, "llm")[0].status == "ok" and result.reply


def test_a_provider_timeout_gives_an_honest_reply_within_the_deadline(degraded):
    stack, _ = degraded
    result = turn(stack, sofia(context_tools=()), "Hi!", dao=TOOL_DAO, deadline_s=3.0)
    llm = steps(result, "llm")[0]
    assert llm.status == "error" and "deadline_exceeded" in llm.error
    assert result.reply == MODEL_UNAVAILABLE_REPLY
    assert result.elapsed_ms < 3000 + 1500  # the deadline held (margin for storing the exchange)
    assert steps(result, "memory.store")[0].status in ("ok", "error")  # attempted, reported either way
