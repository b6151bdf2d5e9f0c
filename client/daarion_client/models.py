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
# The contracts' models (one definition for the service and the client); the old names stay importable.
from daarion_contracts.tools import OpenAITool as OpenAITool  # noqa: E402
from daarion_contracts.tools import OpenAIToolListing as OpenAIToolListing  # noqa: E402
from daarion_contracts.tools import ToolCallError as ToolCallError  # noqa: E402
from daarion_contracts.tools import ToolCallResponse as ToolCallResponse  # noqa: E402

ToolError = ToolCallError
ToolResult = ToolCallResponse
"""``POST /internal/tools/call``'s reply. A tool's own failure is ``ok=False`` with ``error``, not an exception."""
ToolListing = OpenAIToolListing
"""``GET /internal/tools?format=openai``: ``tools`` for ``tools=`` and the OpenAI name -> tool id map."""
