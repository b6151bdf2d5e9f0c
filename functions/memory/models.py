"""Request models of the Memory Orchestrator's contract with agent-runtime."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MemoryKind = Literal["conversation", "kb", "task", "dao-event"]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=200)
    microdao_id: str = Field(min_length=1, max_length=200)
    channel_id: str | None = Field(default=None, max_length=200)
    query: str = Field(min_length=1, max_length=8000)
    limit: int = Field(default=10, ge=1, le=50)
    kinds: list[MemoryKind] | None = None


class StoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=200)
    microdao_id: str = Field(min_length=1, max_length=200)
    channel_id: str | None = Field(default=None, max_length=200)
    kind: MemoryKind
    content: dict[str, Any] | str
