"""The agent turn builds its prompt within the model's context window (daarion_contracts.tokens measures it):
system prompt and new message kept, the oldest history and the lowest-ranked memories dropped first, and the
trace says what went. The LLM Proxy is the real handler behind loopback HTTP (API Gateway v2 events) in
front of a loopback OpenAI-compatible upstream, which records what it receives."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from daarion_client import AsyncLlmProxyClient
from daarion_client.agent import Blueprint, IncomingMessage, Services, run_turn
from daarion_client.llm import context_window_of
from daarion_client.models import MemoryItem, ModelList, ToolListing
from daarion_contracts.tokens import prompt_bound
from tests.fixtures.llm_proxy import Reply

WINDOW = 2_048


class Memory:
    """The Memory Orchestrator's answers for this test: many long memories, best first."""

    def __init__(self, count: int) -> None:
        self.items = [
            MemoryItem.model_validate(
                {
                    "id": f"00000000-0000-0000-0000-{i:012d}",
                    "kind": "conversation",
                    "tier": "mid",
                    "score": 1.0 - i / 100,
                    "content": f"memory {i}: " + "the garden committee met and decided " * 6,
                    "meta": {"source": "conversation", "timestamp": "2026-11-01T10:00:00Z"},
                }
            )
            for i in range(count)
        ]
        self.stored: list[Any] = []

    async def query(self, *args: Any, **kwargs: Any) -> list[MemoryItem]:
        return list(self.items)

    async def store(self, content: Any, **kwargs: Any) -> str:
        self.stored.append(content)
        return "stored-1"


def body_of(upstreams: Any) -> dict[str, Any]:
    return upstreams.openai.chat_requests()[-1].body


class Tools:
    async def list_tools(self, **kwargs: Any) -> ToolListing:
        return ToolListing(tools=[], tool_ids={})


def test_the_turn_fits_a_2048_token_window_with_long_history_and_many_memories(upstreams, llm_bridge, monkeypatch):
    monkeypatch.setenv("LOCAL_LLM_BASE_URL", upstreams.openai.base_url)  # dagi-local-8b: a 2,048-token window
    upstreams.openai.script(Reply.text("Коротко: комітет усе вирішив.", prompt_tokens=900, completion_tokens=12))
    history = tuple(
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}: " + "Привіт, як справи з садом? " * 8}
        for i in range(60)
    )
    message = IncomingMessage(microdao_id="microdao:7", channel_id="general", text="Що вирішили щодо саду?",
                              recent=history)  # fmt: skip
    sofia = Blueprint(agent_id="agent:sofia", system_prompt="You are Sofia, the DAO's assistant.",
                      model="dagi-local-8b", max_tokens=512, default_context_window=4_096)  # fmt: skip
    memory = Memory(12)

    async def turn() -> Any:
        llm = AsyncLlmProxyClient(llm_bridge.url, timeout=30)
        try:
            return await run_turn(sofia, message, Services(llm, memory, Tools()), deadline_s=30)  # type: ignore[arg-type]
        finally:
            await llm.aclose()

    result = asyncio.run(turn())
    assert result.reply == "Коротко: комітет усе вирішив."
    (fit,) = [s for s in result.trace if s.name == "prompt.fit"]
    assert fit.status == "ok" and fit.detail["fits"]
    assert fit.detail["context_window"] == WINDOW  # as the proxy's model list states it, not the default
    assert fit.detail["prompt_tokens_bound_before"] > WINDOW  # it did not fit as it was
    assert fit.detail["dropped_history_messages"] > 0 and fit.detail["dropped_memories"]
    # the lowest-ranked memories went, the best stayed
    assert fit.detail["dropped_memories"][0] == memory.items[-1].id
    assert fit.detail["kept_memories"] > 0
    assert all(m.id not in fit.detail["dropped_memories"] for m in memory.items[: fit.detail["kept_memories"]])
    assert "memory 0:" in body_of(upstreams)["messages"][0]["content"]  # the best memory reached the model

    (received,) = upstreams.openai.chat_requests()
    body = received.body
    assert prompt_bound(body) + body["max_tokens"] <= WINDOW  # what the model receives fits, by the estimator
    messages = body["messages"]
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("You are Sofia")
    assert messages[-1] == {"role": "user", "content": "Що вирішили щодо саду?"}
    kept = [m["content"] for m in messages[1:-1]]
    assert kept == [m["content"] for m in history[len(history) - len(kept) :]]  # the newest history stayed
    d = fit.detail
    before, after = d["prompt_tokens_bound_before"], d["prompt_tokens_bound"]
    dropped = f"{d['dropped_history_messages']} history messages, {len(d['dropped_memories'])} of 12 memories"
    print(f"\nprompt bound {before} -> {after} tokens (+{body['max_tokens']} for the answer), window {WINDOW}: "
          f"dropped {dropped}")  # fmt: skip


def test_the_window_is_read_from_the_proxys_model_list():
    listing = ModelList.model_validate(
        json.loads(
            '{"object": "list", "data": [{"id": "dagi-local-8b", "object": "model", "created": 0, '
            '"owned_by": "local", "context_window": 2048}, {"id": "gpt-4.1-mini", "object": "model", '
            '"created": 0, "owned_by": "openai"}]}'
        )
    )
    assert context_window_of(listing, "dagi-local-8b") == 2048
    assert context_window_of(listing, "gpt-4.1-mini") is None  # not stated: the caller's default applies
    assert context_window_of(listing, "unknown") is None


class BigTools:
    """Toolcore's answers for this test: one tool, whose result is far larger than a small model's window."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def list_tools(self, **kwargs: Any) -> ToolListing:
        return ToolListing.model_validate({
            "tools": [{"type": "function", "function": {
                "name": "projects__list", "description": "List the microDAO's projects.",
                "parameters": {"type": "object", "properties": {}}, "strict": False}}],
            "tool_ids": {"projects__list": "projects.list"},
        })  # fmt: skip

    async def call(self, tool_id: str, args: Any, **kwargs: Any) -> Any:
        from daarion_client.models import ToolResult

        self.calls.append(tool_id)
        projects = [{"id": f"p-{i}", "name": f"Проєкт {i}: громадський сад і бюджет"} for i in range(200)]
        return ToolResult(ok=True, result=projects, tool_id=tool_id, latency_ms=1.0)


def test_the_tool_rounds_of_a_turn_are_fitted_to_the_window_too(upstreams, llm_bridge, monkeypatch):
    """The first call fits; the model then asks for a tool whose result alone exceeds the window: before the
    next call the prompt is re-fitted (more memories and history go), then the longest tool result is cut,
    and what the model receives still fits the 2,048-token window by the estimator."""
    monkeypatch.setenv("LOCAL_LLM_BASE_URL", upstreams.openai.base_url)
    upstreams.openai.script(
        Reply.tool_call("projects__list", {}, call_id="call_1"), Reply.text("Є 200 проєктів.", prompt_tokens=900)
    )
    history = tuple({"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}: " + "Як справи? " * 8}
                    for i in range(10))  # fmt: skip
    message = IncomingMessage(microdao_id="microdao:7", channel_id="general", text="Які в нас проєкти?",
                              recent=history)  # fmt: skip
    sofia = Blueprint(agent_id="agent:sofia", system_prompt="You are Sofia, the DAO's assistant.",
                      model="dagi-local-8b", max_tokens=512, allowed_tools=("projects.list",))  # fmt: skip
    tools = BigTools()

    async def turn() -> Any:
        llm = AsyncLlmProxyClient(llm_bridge.url, timeout=30)
        try:
            return await run_turn(sofia, message, Services(llm, Memory(4), tools), deadline_s=30)  # type: ignore[arg-type]
        finally:
            await llm.aclose()

    result = asyncio.run(turn())
    assert tools.calls == ["projects.list"] and result.reply == "Є 200 проєктів."
    (refit,) = [s for s in result.trace if s.name == "prompt.refit"]
    assert refit.status == "ok" and refit.detail["fits"] and refit.detail["truncated_tool_results"] == ["call_1"]
    first, second = upstreams.openai.chat_requests()
    for received in (first, second):  # every call of the turn fits, by the estimator
        assert prompt_bound(received.body) + received.body["max_tokens"] <= WINDOW
    messages = second.body["messages"]
    assert messages[0]["role"] == "system" and messages[-3]["content"] == "Які в нас проєкти?"
    assert messages[-2]["tool_calls"][0]["id"] == "call_1"
    assert messages[-1]["role"] == "tool" and messages[-1]["content"].endswith(
        "[truncated to fit the model's context window]"
    )
    print(
        f"\ntool round: the result cut to {len(messages[-1]['content'])} characters; "
        f"history kept {refit.detail['kept_history_messages']}, memories kept {refit.detail['kept_memories']}"
    )
