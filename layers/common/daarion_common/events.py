"""The events that cross queues. Producers and consumers import these; nothing else defines them.

Every event has an ``event_id`` (the idempotency key consumers write conditionally on) and a
``schema_version`` so consumers can refuse what they do not understand.

Usage events, version 2 (adds, all optional): on ``LlmCallEvent`` the ``reservation`` the call held on the
rate-limit counters and ``charge`` (whether the figures are what the provider billed); on ``ToolCallEvent``
``replay``, ``attempts`` and ``truncated``. Producers send version 2; consumers accept 1 and 2 during a
rollout (deploy the consumer first). A version 1 event carrying a version 2 field is refused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1, 2] = 2
    event_id: str = Field(default_factory=_new_id, min_length=1, max_length=128)
    occurred_at: datetime = Field(default_factory=_now)
    agent_id: str = Field(min_length=1, max_length=200)
    microdao_id: str = Field(min_length=1, max_length=200)
    channel_id: str | None = Field(default=None, max_length=200)
    latency_ms: float = Field(ge=0)
    status: Literal["ok", "error"]
    error_code: str | None = Field(default=None, max_length=100)

    _V2_FIELDS: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _fields_of_its_version(self) -> _Event:
        if self.schema_version == 1:
            newer = [name for name in self._V2_FIELDS if name in self.model_fields_set]
            if newer:
                raise ValueError(f"schema_version 1 has no {', '.join(newer)} (version 2 fields)")
        return self


class HeldCounter(BaseModel):
    """An amount a call held on one rate-limit counter (``pk`` of the rate-limit table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pk: str = Field(min_length=1, max_length=1024)
    attribute: Literal["tokens", "usd_micros"]
    amount: int = Field(ge=0)


class Reservation(BaseModel):
    """What the LLM Proxy held for a call before calling (an upper bound of its cost), and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int = Field(default=0, ge=0)
    usd_micros: int = Field(default=0, ge=0)
    counters: list[HeldCounter] = Field(default_factory=list, max_length=16)


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
    # version 2
    reservation: Reservation | None = Field(default=None, description="what the call held on the limits")
    charge: Literal["actual", "reserved"] = Field(
        default="actual",
        description="actual: the figures are what was billed (0 for a call no provider answered); reserved: "
        "unknown (a timeout or a cut stream after the provider started), the reservation stands",
    )

    _V2_FIELDS: ClassVar[tuple[str, ...]] = ("reservation", "charge")


class ToolCallEvent(_Event):
    """One call through Toolcore."""

    type: Literal["tool_call"] = "tool_call"
    tool_id: str = Field(min_length=1)
    # version 2
    replay: bool = Field(default=False, description="an idempotent replay of an earlier call (nothing ran)")
    attempts: int | None = Field(default=None, ge=0, description="executor attempts (retries included)")
    truncated: bool = Field(default=False, description="the result was cut at max_result_bytes")

    _V2_FIELDS: ClassVar[tuple[str, ...]] = ("replay", "attempts", "truncated")


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
