"""The Memory Orchestrator's wire contract: store, query, summarize, forget and the knowledge base."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from daarion_contracts.types import Identifier, WireModel

QUERY_PATH = "/internal/agent-memory/query"
STORE_PATH = "/internal/agent-memory/store"
SUMMARIZE_PATH = "/internal/agent-memory/summarize"
FORGET_PATH = "/internal/agent-memory/forget"
MEMORY_PATH = "/internal/agent-memory/{memory_id}"
DOCUMENTS_PATH = "/internal/agent-memory/kb/documents"
DOCUMENT_PATH = "/internal/agent-memory/kb/documents/{document_id}"
HEALTH_PATH = "/internal/agent-memory/health"
OPENAPI_PATH = "/internal/agent-memory/openapi.json"

MemoryKind = Literal["conversation", "kb", "task", "dao-event"]
MemoryTier = Literal["short", "mid", "long"]

MAX_CONTENT_CHARS = 32_000
MAX_META_CHARS = 8_000
MAX_QUERY_CHARS = 8_000
# A knowledge-base document: its size bounds the chunks one indexing run must embed.
MAX_DOCUMENT_CHARS = 200_000


def _not_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be blank")
    return value


class QueryRequest(WireModel):
    agent_id: Identifier
    microdao_id: Identifier
    channel_id: Identifier | None = None
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    limit: StrictInt = Field(default=10, ge=1, le=50)
    kinds: list[MemoryKind] | None = Field(default=None, min_length=1)

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        return _not_blank(value, "query")


class StoreRequest(WireModel):
    agent_id: Identifier
    microdao_id: Identifier
    channel_id: Identifier | None = None
    kind: MemoryKind
    content: dict[str, Any] | str = Field(
        description="An exchange `{user_message, agent_reply, timestamp, ...}` or plain text."
    )
    tier: MemoryTier | None = Field(default=None, description="default: short for channel conversations, else mid")
    meta: dict[str, Any] | None = None
    ttl_seconds: StrictInt | None = Field(default=None, ge=60, le=10 * 365 * 86400)

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
        if value is not None and len(json.dumps(value, ensure_ascii=False, default=str)) > MAX_META_CHARS:
            raise ValueError(f"meta is too large (at most {MAX_META_CHARS} characters of JSON)")
        return value

    @model_validator(mode="after")
    def _kb_goes_through_documents(self) -> StoreRequest:
        if self.tier == "long" and self.kind != "kb":
            raise ValueError("tier 'long' is the knowledge base: use kind 'kb'")
        return self


class SummarizeRequest(WireModel):
    agent_id: Identifier
    microdao_id: Identifier
    channel_id: Identifier
    max_messages: StrictInt | None = Field(default=None, ge=2, le=500)
    model: Identifier | None = None


class ForgetRequest(WireModel):
    """At least one of ``agent_id`` and ``channel_id`` (a whole microDAO is not forgotten by accident)."""

    microdao_id: Identifier
    agent_id: Identifier | None = None
    channel_id: Identifier | None = None
    kinds: list[MemoryKind] | None = Field(default=None, min_length=1)
    tiers: list[MemoryTier] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _needs_a_scope(self) -> ForgetRequest:
        if self.agent_id is None and self.channel_id is None:
            raise ValueError("agent_id or channel_id is required (a whole microDAO is not forgotten by accident)")
        return self


class DocumentRequest(WireModel):
    """Exactly one of ``text`` and ``markdown``, not blank."""

    microdao_id: Identifier
    agent_id: Identifier | None = None
    document_id: Identifier | None = Field(default=None, pattern=r"^[^\s/][^\s]*$")
    title: str = Field(min_length=1, max_length=500)
    text: str | None = Field(default=None, max_length=MAX_DOCUMENT_CHARS)
    markdown: str | None = Field(default=None, max_length=MAX_DOCUMENT_CHARS)
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
