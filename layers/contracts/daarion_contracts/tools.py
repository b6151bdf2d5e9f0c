"""Toolcore's wire contract: the tool listing, one tool call, and MCP's entry point."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from daarion_contracts.types import Identifier, WireModel

TOOLS_PATH = "/internal/tools"
CALL_PATH = "/internal/tools/call"
MCP_PATH = "/mcp"
HEALTH_PATH = "/internal/tools/health"
OPENAPI_PATH = "/internal/tools/openapi.json"


class ToolCallRequest(WireModel):
    """``POST /internal/tools/call``. ``context`` is advisory: the verified identity overrides it."""

    tool_id: Identifier
    agent_id: Identifier
    microdao_id: Identifier
    args: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] | None = None
    idempotency_key: Identifier | None = None
