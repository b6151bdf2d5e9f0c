"""Request models of Toolcore's contract with agent-runtime."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ToolCallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_id: str = Field(min_length=1, max_length=200)
    agent_id: str = Field(min_length=1, max_length=200)
    microdao_id: str = Field(min_length=1, max_length=200)
    args: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, max_length=200)
