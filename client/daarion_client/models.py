"""What the services answer, as typed objects (unknown fields are kept, not rejected)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- LLM Proxy
# The contracts' own response models (unknown fields kept); the old names stay importable.
from daarion_contracts import llm as _llm  # noqa: E402

ChatCompletion = _llm.ChatCompletion
EmbeddingList = _llm.EmbeddingList
InternalEmbeddings = _llm.InternalEmbeddings
ModelCatalogue = _llm.ModelCatalogue
ModelList = _llm.ModelList
ProxyResponse = _llm.ProxyResponse
TokenUsage = _llm.TokenUsage
UsageReport = _llm.UsageReport

ChatResult = ProxyResponse
"""``POST /internal/llm/proxy``'s reply."""
Usage = TokenUsage


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
