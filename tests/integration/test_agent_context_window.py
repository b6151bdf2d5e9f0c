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
