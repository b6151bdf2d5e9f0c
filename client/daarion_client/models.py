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
# The contracts' own models, under the names callers import (no wire model is declared here).
from daarion_contracts import memory as _memory  # noqa: E402

MemoryItem = _memory.MemoryItem
MemoryMeta = _memory.MemoryMeta
QueryResponse = _memory.QueryResponse
StoreResponse = _memory.StoreResponse
SummarizeResponse = _memory.SummarizeResponse
ForgetResponse = _memory.ForgetResponse
DocumentResponse = _memory.DocumentResponse
DocumentInfo = _memory.DocumentInfo
DocumentList = _memory.DocumentList
DocumentDeleted = _memory.DocumentDeleted


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
