"""Clients of the Memory Orchestrator (base URL from AGENT_MEMORY_URL)."""

from __future__ import annotations

from typing import Any

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.models import MemoryItem


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
