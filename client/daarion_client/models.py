"""What the services answer, as typed objects (unknown fields are kept, not rejected)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- LLM Proxy
class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatResult(_Model):
    """``POST /internal/llm/proxy``'s reply."""

    content: str | None = None
    usage: Usage = Field(default_factory=Usage)
    provider: str | None = None
    model_resolved: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    request_id: str | None = None


# ---------------------------------------------------------------- Memory


class MemoryItem(_Model):
    id: str
    kind: str | None = None
    tier: str | None = None
    score: float | None = None
    content: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- Toolcore


class ToolError(_Model):
    code: str
    message: str = ""


class ToolResult(_Model):
    """``POST /internal/tools/call``'s reply. A tool's own failure is ``ok=False`` with ``error``, not an exception."""

    ok: bool
    result: Any = None
    error: ToolError | None = None
    tool_id: str | None = None
    latency_ms: float | None = None


class ToolListing(_Model):
    """``GET /internal/tools?format=openai``: tools for ``tools=`` and the OpenAI name -> tool id map."""

    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_ids: dict[str, str] = Field(default_factory=dict)
