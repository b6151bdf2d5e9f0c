"""Clients of Toolcore (base URL from TOOLCORE_URL)."""

from __future__ import annotations

import uuid
from typing import Any

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.models import ToolListing, ToolResult


def _call_body(
    tool_id: str, agent_id: str, microdao_id: str, args: dict[str, Any], context: dict[str, Any] | None, key: str | None
) -> dict[str, Any]:
    # A fresh idempotency key per logical call makes the client's own retries safe for every tool.
    return {
        "tool_id": tool_id, "agent_id": agent_id, "microdao_id": microdao_id, "args": args,
        "context": context, "idempotency_key": key or str(uuid.uuid4()),
    }  # fmt: skip


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
