"""Sync and async clients of the three services. Base URLs come from the environment variables
agent-runtime already uses: LLM_PROXY_URL, AGENT_MEMORY_URL, TOOLCORE_URL."""

from __future__ import annotations

import uuid
from typing import Any

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.models import ChatResult, MemoryItem, ToolListing, ToolResult


def _chat_body(
    model: str, messages: list[dict[str, Any]], agent_id: str, microdao_id: str, channel_id: str | None, **options: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages}
    body.update({k: v for k, v in options.items() if v is not None})
    body["metadata"] = {"agent_id": agent_id, "microdao_id": microdao_id, "channel_id": channel_id}
    return body


def _memory_items(data: dict[str, Any]) -> list[MemoryItem]:
    return [MemoryItem.model_validate(i) for i in data.get("items", data.get("results", []))]


def _query_body(
    query: str, agent_id: str, microdao_id: str, channel_id: str | None, limit: int, kinds: list[str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"agent_id": agent_id, "microdao_id": microdao_id, "channel_id": channel_id}
    body.update(query=query, limit=limit)
    if kinds:
        body["kinds"] = kinds
    return body


def _store_body(agent_id: str, microdao_id: str, channel_id: str | None, kind: str, content: Any) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "microdao_id": microdao_id,
        "channel_id": channel_id,
        "kind": kind,
        "content": content,
    }


def _call_body(
    tool_id: str, agent_id: str, microdao_id: str, args: dict[str, Any], context: dict[str, Any] | None, key: str | None
) -> dict[str, Any]:
    # A fresh idempotency key per logical call makes the client's own retries safe for every tool.
    return {
        "tool_id": tool_id, "agent_id": agent_id, "microdao_id": microdao_id, "args": args,
        "context": context, "idempotency_key": key or str(uuid.uuid4()),
    }  # fmt: skip


class LlmProxyClient(SyncCore):
    service, env_var, default_url = "llm-proxy", "LLM_PROXY_URL", "http://127.0.0.1:7007"

    def chat(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, **options: Any,
    ) -> ChatResult:  # fmt: skip
        body = _chat_body(model, messages, agent_id, microdao_id, channel_id, **options)
        return ChatResult.model_validate(self.request("POST", "/internal/llm/proxy", json=body, deadline=deadline))


class AsyncLlmProxyClient(AsyncCore):
    service, env_var, default_url = "llm-proxy", "LLM_PROXY_URL", "http://127.0.0.1:7007"

    async def chat(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, **options: Any,
    ) -> ChatResult:  # fmt: skip
        body = _chat_body(model, messages, agent_id, microdao_id, channel_id, **options)
        return ChatResult.model_validate(
            await self.request("POST", "/internal/llm/proxy", json=body, deadline=deadline)
        )


class MemoryClient(SyncCore):
    service, env_var, default_url = "memory", "AGENT_MEMORY_URL", "http://127.0.0.1:7008"

    def query(
        self, query: str, *, agent_id: str, microdao_id: str, channel_id: str | None = None, limit: int = 5,
        kinds: list[str] | None = None, deadline: float | None = None,
    ) -> list[MemoryItem]:  # fmt: skip
        body = _query_body(query, agent_id, microdao_id, channel_id, limit, kinds)
        return _memory_items(self.request("POST", "/internal/agent-memory/query", json=body, deadline=deadline))

    def store(
        self, content: Any, *, agent_id: str, microdao_id: str, channel_id: str | None = None,
        kind: str = "conversation", deadline: float | None = None,
    ) -> str:  # fmt: skip
        body = _store_body(agent_id, microdao_id, channel_id, kind, content)
        return str(self.request("POST", "/internal/agent-memory/store", json=body, deadline=deadline)["id"])


class AsyncMemoryClient(AsyncCore):
    service, env_var, default_url = "memory", "AGENT_MEMORY_URL", "http://127.0.0.1:7008"

    async def query(
        self, query: str, *, agent_id: str, microdao_id: str, channel_id: str | None = None, limit: int = 5,
        kinds: list[str] | None = None, deadline: float | None = None,
    ) -> list[MemoryItem]:  # fmt: skip
        body = _query_body(query, agent_id, microdao_id, channel_id, limit, kinds)
        return _memory_items(await self.request("POST", "/internal/agent-memory/query", json=body, deadline=deadline))

    async def store(
        self, content: Any, *, agent_id: str, microdao_id: str, channel_id: str | None = None,
        kind: str = "conversation", deadline: float | None = None,
    ) -> str:  # fmt: skip
        body = _store_body(agent_id, microdao_id, channel_id, kind, content)
        return str((await self.request("POST", "/internal/agent-memory/store", json=body, deadline=deadline))["id"])


class ToolcoreClient(SyncCore):
    service, env_var, default_url = "toolcore", "TOOLCORE_URL", "http://127.0.0.1:7009"

    def list_tools(self, *, agent_id: str, microdao_id: str, deadline: float | None = None) -> ToolListing:
        params = {"agent_id": agent_id, "microdao_id": microdao_id, "format": "openai"}
        return ToolListing.model_validate(self.request("GET", "/internal/tools", params=params, deadline=deadline))

    def call(
        self, tool_id: str, args: dict[str, Any], *, agent_id: str, microdao_id: str,
        context: dict[str, Any] | None = None, idempotency_key: str | None = None, deadline: float | None = None,
    ) -> ToolResult:  # fmt: skip
        body = _call_body(tool_id, agent_id, microdao_id, args, context, idempotency_key)
        return ToolResult.model_validate(self.request("POST", "/internal/tools/call", json=body, deadline=deadline))


class AsyncToolcoreClient(AsyncCore):
    service, env_var, default_url = "toolcore", "TOOLCORE_URL", "http://127.0.0.1:7009"

    async def list_tools(self, *, agent_id: str, microdao_id: str, deadline: float | None = None) -> ToolListing:
        params = {"agent_id": agent_id, "microdao_id": microdao_id, "format": "openai"}
        return ToolListing.model_validate(
            await self.request("GET", "/internal/tools", params=params, deadline=deadline)
        )

    async def call(
        self, tool_id: str, args: dict[str, Any], *, agent_id: str, microdao_id: str,
        context: dict[str, Any] | None = None, idempotency_key: str | None = None, deadline: float | None = None,
    ) -> ToolResult:  # fmt: skip
        body = _call_body(tool_id, agent_id, microdao_id, args, context, idempotency_key)
        return ToolResult.model_validate(
            await self.request("POST", "/internal/tools/call", json=body, deadline=deadline)
        )
