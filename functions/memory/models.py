"""Request and response models of the Memory Orchestrator's contract with agent-runtime."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MemoryKind = Literal["conversation", "kb", "task", "dao-event"]
MemoryTier = Literal["short", "mid", "long"]

MAX_CONTENT_CHARS = 32_000
_Id = Field(min_length=1, max_length=200)


def _not_blank(value: str | None, what: str) -> str | None:
    if value is not None and not value.strip():
        raise ValueError(f"{what} must not be blank")
    return value


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = _Id
    microdao_id: str = _Id
    channel_id: str | None = Field(default=None, max_length=200)
    query: str = Field(min_length=1, max_length=8000)
    limit: int = Field(default=10, ge=1, le=50)
    kinds: list[MemoryKind] | None = Field(default=None, min_length=1)

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        return _not_blank(value, "query") or value


class StoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = _Id
    microdao_id: str = _Id
    channel_id: str | None = Field(default=None, max_length=200)
    kind: MemoryKind
    content: dict[str, Any] | str
    tier: MemoryTier | None = Field(default=None, description="default: short for channel conversations, else mid")
    meta: dict[str, Any] | None = None
    ttl_seconds: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)

    @field_validator("content")
    @classmethod
    def _content_size(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        size = len(value) if isinstance(value, str) else len(json.dumps(value, ensure_ascii=False))
        if size > MAX_CONTENT_CHARS:
            raise ValueError(f"content is too large ({size} characters; at most {MAX_CONTENT_CHARS})")
        if isinstance(value, str) and not value.strip():
            raise ValueError("content must not be empty")
        if isinstance(value, dict) and not value:
            raise ValueError("content must not be empty")
        return value

    @field_validator("meta")
    @classmethod
    def _meta_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, ensure_ascii=False, default=str)) > 8000:
            raise ValueError("meta is too large (at most 8000 characters of JSON)")
        return value

    @model_validator(mode="after")
    def _kb_goes_through_documents(self) -> StoreRequest:
        if self.tier == "long" and self.kind != "kb":
            raise ValueError("tier 'long' is the knowledge base: use kind 'kb'")
        return self


class SummarizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = _Id
    microdao_id: str = _Id
    channel_id: str = _Id
    max_messages: int | None = Field(default=None, ge=2, le=500)
    model: str | None = Field(default=None, min_length=1, max_length=100)


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    microdao_id: str = _Id
    agent_id: str | None = Field(default=None, min_length=1, max_length=200)
    channel_id: str | None = Field(default=None, min_length=1, max_length=200)
    kinds: list[MemoryKind] | None = Field(default=None, min_length=1)
    tiers: list[MemoryTier] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _needs_a_scope(self) -> ForgetRequest:
        if self.agent_id is None and self.channel_id is None:
            raise ValueError("agent_id or channel_id is required (a whole microDAO is not forgotten by accident)")
        return self


class DocumentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    microdao_id: str = _Id
    agent_id: str | None = Field(default=None, max_length=200)
    document_id: str | None = Field(default=None, min_length=1, max_length=500, pattern=r"^[^\s/][^\s]*$")
    title: str = Field(min_length=1, max_length=500)
    text: str | None = Field(default=None, max_length=2_000_000)
    markdown: str | None = Field(default=None, max_length=2_000_000)
    source: str | None = Field(default=None, max_length=2000)
    meta: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_body(self) -> DocumentRequest:
        body = self.markdown if self.markdown is not None else self.text
        if self.text is not None and self.markdown is not None:
            raise ValueError("give text or markdown, not both")
        if body is None or not body.strip():
            raise ValueError("text or markdown is required and must not be empty")
        return self

    @property
    def body(self) -> str:
        return self.markdown if self.markdown is not None else (self.text or "")
