"""The events that cross queues. Producers and consumers import these; nothing else defines them.

Every event has an ``event_id`` (the idempotency key consumers write conditionally on) and a
``schema_version`` so consumers can refuse what they do not understand.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    event_id: str = Field(default_factory=_new_id, min_length=1, max_length=128)
    occurred_at: datetime = Field(default_factory=_now)
    agent_id: str = Field(min_length=1, max_length=200)
    microdao_id: str = Field(min_length=1, max_length=200)
    channel_id: str | None = Field(default=None, max_length=200)
    latency_ms: float = Field(ge=0)
    status: Literal["ok", "error"]
    error_code: str | None = Field(default=None, max_length=100)


class LlmCallEvent(_Event):
    """One call through the LLM Proxy, success or failure."""

    type: Literal["llm_call"] = "llm_call"
    request_id: str | None = None
    model: str = Field(min_length=1, description="the logical model the caller asked for")
    provider: str | None = None
    model_resolved: str | None = Field(default=None, description="the physical model that answered")
    call_kind: Literal["chat", "embeddings"] = "chat"
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    fallback_used: bool = False
    streamed: bool = False


class ToolCallEvent(_Event):
    """One call through Toolcore."""

    type: Literal["tool_call"] = "tool_call"
    tool_id: str = Field(min_length=1)


UsageEvent = Annotated[LlmCallEvent | ToolCallEvent, Field(discriminator="type")]
usage_event_adapter: TypeAdapter[LlmCallEvent | ToolCallEvent] = TypeAdapter(UsageEvent)


class IndexRequest(BaseModel):
    """Ask the memory indexer to embed memories (by id) or a knowledge-base document's chunks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    type: Literal["index"] = "index"
    event_id: str = Field(default_factory=_new_id, min_length=1, max_length=128)
    memory_ids: list[str] = Field(default_factory=list, max_length=500)
    document_id: str | None = None
