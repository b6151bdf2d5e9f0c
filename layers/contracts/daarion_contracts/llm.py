"""The LLM Proxy's wire contract: agent-runtime's ``/internal/llm/proxy``, the OpenAI-compatible
routes, embeddings, the model catalogue and the usage API.

Requests are :class:`~daarion_contracts.types.WireModel` (unknown fields refused, except on the
OpenAI-compatible routes, which pass them through to the provider). Responses are :class:`Reply`
models: unknown fields are kept when parsing (a newer proxy may add some), and every field the proxy
always sends is *required* in the OpenAPI document.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from daarion_contracts.types import Identifier, WireModel

PROXY_PATH = "/internal/llm/proxy"
EMBEDDINGS_PATH = "/internal/llm/embeddings"
MODELS_PATH = "/internal/llm/models"
USAGE_PATH = "/internal/llm/usage"
HEALTH_PATH = "/internal/llm/health"
OPENAPI_PATH = "/internal/llm/openapi.json"
V1_CHAT_PATH = "/v1/chat/completions"
V1_MODELS_PATH = "/v1/models"
V1_EMBEDDINGS_PATH = "/v1/embeddings"

# Headers naming the caller on the OpenAI-compatible routes (when ``metadata`` does not).
AGENT_HEADER, MICRODAO_HEADER, CHANNEL_HEADER = "X-Agent-Id", "X-Microdao-Id", "X-Channel-Id"
# How long the caller waits, in milliseconds: the LLM Proxy ends the call (504 upstream_timeout) within it, so
# a caller that gives up never leaves a provider call running (and paid for) behind it.
TIMEOUT_HEADER = "X-Request-Timeout-Ms"

# ---------------------------------------------------------------------------- bounds
# Any request body above this is refused with 413 before it is parsed (API Gateway's own cap is 10 MB,
# Lambda's 6 MB).
MAX_BODY_BYTES = 4_000_000
MAX_TOKENS_CAP = 200_000
# Choices per chat call (``n``): each is reserved at the completion cap, so a budget bounds them too.
MAX_CHOICES = 16
# Chat: messages per call, and characters in all message texts (more than any model's context window:
# such a prompt is refused here rather than sent upstream to fail slowly).
MAX_MESSAGES = 2_048
MAX_PROMPT_CHARS = 1_000_000
MAX_TOOLS = 128
# Embeddings, on both embeddings routes, whatever the model: inputs per request and characters in all.
MAX_EMBEDDING_INPUTS = 512
MAX_EMBEDDING_CHARS = 1_000_000
# The in-process model (multilingual-e5-small on the function's own CPU) is further bounded so its worst
# case fits the 30 s of API Gateway: ~2 s per 512-token window on a 1024 MB function and up to one token
# per character (CJK, emoji). Beyond either bound: 413 ``payload_too_large`` naming ``input``.
MAX_LOCAL_EMBEDDING_CHARS = 64_000
MAX_LOCAL_EMBEDDING_TOKENS = 4_096
# The usage report: at most this many days from ``from`` to ``to`` (both included), within these years.
MAX_USAGE_DAYS = 366
USAGE_YEARS = (2000, 2999)


def _bounded_inputs(value: str | list[str]) -> str | list[str]:
    texts = [value] if isinstance(value, str) else value
    total = sum(len(t) for t in texts)
    if total > MAX_EMBEDDING_CHARS:
        raise ValueError(f"{total} characters in all; at most {MAX_EMBEDDING_CHARS} per request")
    if any(not t for t in texts):
        raise ValueError("an input must not be empty")
    return value


def _prompt_chars(messages: list[ChatMessage]) -> int:
    total = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            total += len(content)
        elif content:
            total += len(json.dumps(content, ensure_ascii=False))
    return total


def _bounded_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    total = _prompt_chars(messages)
    if total > MAX_PROMPT_CHARS:
        raise ValueError(f"{total} characters of message content; at most {MAX_PROMPT_CHARS} per call")
    return messages


# ---------------------------------------------------------------------------- requests
class ChatMessage(BaseModel):
    """One OpenAI-style message; fields other than these (``name``, ``tool_calls``, ``tool_call_id``) pass through."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class CallMetadata(BaseModel):
    """Who is calling: the usage ledger, the limits and the budgets are kept per agent and microDAO."""

    model_config = ConfigDict(extra="allow")

    agent_id: Identifier
    microdao_id: Identifier
    channel_id: Identifier | None = None


_CALLER = {"agent_id": "agent:sofia", "microdao_id": "microdao:7", "channel_id": "channel:general"}
_MESSAGES = [{"role": "system", "content": "You are Sofia."}, {"role": "user", "content": "Що нового?"}]


class ProxyRequest(WireModel):
    """``POST /internal/llm/proxy`` as agent-runtime sends it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "gpt-4.1-mini", "messages": _MESSAGES, "max_tokens": 256, "metadata": _CALLER}]
        }
    )

    model: Identifier = Field(description="A logical model (`GET /internal/llm/models`), e.g. `gpt-4.1-mini`.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, gt=0, le=1, strict=True)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    metadata: CallMetadata

    _bounded = field_validator("messages")(_bounded_messages)


class ChatCompletionRequest(WireModel):
    """``POST /v1/chat/completions``: OpenAI's shape. Fields not named here pass through to the provider.

    The caller is ``metadata.agent_id`` / ``metadata.microdao_id``, or the ``X-Agent-Id`` /
    ``X-Microdao-Id`` headers."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"model": "gpt-4.1-mini", "messages": _MESSAGES, "metadata": _CALLER},
                {"model": "gpt-4.1-mini", "messages": _MESSAGES, "stream": True, "metadata": _CALLER},
            ]
        },
    )

    model: Identifier
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    n: StrictInt | None = Field(
        default=None, ge=1, le=MAX_CHOICES, description="Choices; each is reserved at the completion cap."
    )
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)
    metadata: dict[str, Any] | None = None

    _bounded = field_validator("messages")(_bounded_messages)


class EmbeddingsRequest(WireModel):
    """``POST /v1/embeddings``: OpenAI's shape, plus ``input_type`` (e5 embeds queries and passages apart)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"input": ["Привіт, світе"], "input_type": "query", "metadata": _CALLER}]},
    )

    model: Identifier | None = None
    input: str | list[str] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["query", "passage"] = "passage"
    metadata: dict[str, Any] | None = None

    _bounded = field_validator("input")(_bounded_inputs)


class InternalEmbeddingsRequest(WireModel):
    """``POST /internal/llm/embeddings``: what the Memory Orchestrator sends."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"input": ["Кодове слово — гречаник-42."], "metadata": _CALLER}]}
    )

    model: Identifier | None = None
    input: list[str] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
    input_type: Literal["query", "passage"] = "passage"
    metadata: CallMetadata

    _bounded = field_validator("input")(_bounded_inputs)


# ---------------------------------------------------------------------------- responses
class Reply(BaseModel):
    """Base of every response model: unknown fields kept (forward compatibility); in the OpenAPI document
    every field is required but those named in ``omitted_when_empty`` (left out of the body when empty)."""

    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=True)
    omitted_when_empty: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: Any) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        if cls.omitted_when_empty and "required" in target:
            target["required"] = [name for name in target["required"] if name not in cls.omitted_when_empty]
        return schema


class TokenUsage(Reply):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)


class ProxyResponse(Reply):
    """``POST /internal/llm/proxy``'s answer. agent-runtime reads ``content``."""

    omitted_when_empty = frozenset({"tool_calls"})

    content: str = Field(default="", description="The reply's text (empty when the model only calls tools).")
    usage: TokenUsage = Field(default_factory=TokenUsage)
    provider: str | None = Field(
        default=None, description="The provider that answered (`offline` locally without keys)."
    )
    model: str | None = Field(default=None, description="The logical model asked for.")
    model_resolved: str | None = Field(default=None, description="The physical model that answered.")
    latency_ms: float | None = None
    cost_usd: float | None = Field(default=None, ge=0)
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = Field(default=None, description="OpenAI-style tool calls, when any.")
    fallback_used: bool = False
    request_id: str | None = None


class ChatCompletionMessage(Reply):
    omitted_when_empty = frozenset({"tool_calls"})

    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatCompletionChoice(Reply):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: str | None = None


class ChatCompletion(Reply):
    """``POST /v1/chat/completions`` (not streamed): OpenAI's ``chat.completion``, the provider's answer
    passed through (provider-specific fields such as ``reasoning_content`` too)."""

    omitted_when_empty = frozenset({"usage"})

    id: str
    object: str = "chat.completion"
    created: int = 0
    model: str
    choices: list[ChatCompletionChoice]
    usage: TokenUsage | None = None


class ModelCard(Reply):
    omitted_when_empty = frozenset({"context_window"})

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    context_window: int | None = Field(
        default=None,
        ge=1,
        description="Prompt + completion tokens the model takes, as measured by `daarion_contracts.tokens."
        "prompt_bound` + the completion cap (chat models; left out when not stated).",
    )


class ModelList(Reply):
    """``GET /v1/models``: the logical models, in OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class Embedding(Reply):
    object: Literal["embedding"] = "embedding"
    index: int = Field(ge=0)
    embedding: list[float] | str = Field(description="The vector, or its little-endian float32 bytes in base64.")


class EmbeddingUsage(Reply):
    prompt_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)


class EmbeddingList(Reply):
    """``POST /v1/embeddings``: OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)


class InternalEmbeddings(Reply):
    """``POST /internal/llm/embeddings``: one vector per input, in order."""

    embeddings: list[list[float]]
    model: str
    model_resolved: str | None = None
    provider: str | None = None
    dimensions: int = Field(ge=0)
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)
    cost_usd: float = Field(default=0.0, ge=0)
    request_id: str | None = None


class ModelInfo(Reply):
    """One logical model of the routing config."""

    omitted_when_empty = frozenset({"dimensions", "missing", "served_by", "context_window"})

    model: str
    kind: Literal["chat", "embeddings"]
    provider: str
    physical: str
    price_in_usd_per_1m: float
    price_out_usd_per_1m: float
    max_tokens: int
    timeout_s: float
    long_path_only: bool = Field(
        default=False, description="Served on the long path only: it may need longer than the API path's deadline."
    )
    context_window: int | None = Field(default=None, description="Chat models: prompt + completion tokens it takes.")
    fallbacks: list[str]
    configured: bool = Field(description="Whether the provider has what it needs (a key, a base URL).")
    circuit: str = Field(description="The provider's circuit breaker in this container: closed, open or half_open.")
    dimensions: int | None = Field(default=None, description="Embedding models: the vector size.")
    missing: str | None = Field(default=None, description="Unconfigured: the variable or secret field missing.")
    served_by: str | None = Field(
        default=None, description="Unconfigured: who answers instead (`offline` locally for chat models)."
    )


class ModelCatalogue(Reply):
    """``GET /internal/llm/models``."""

    models: list[ModelInfo]
    default_embedding_model: str


class UsageTotals(Reply):
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    avg_latency_ms: float | None = None
    fallbacks: int = 0
    streamed: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_replays: int = Field(default=0, description="Idempotent replays of earlier tool calls (nothing ran).")


class UsageSeriesPoint(UsageTotals):
    key: dict[str, str] = Field(description="The group's value for each `group_by` dimension.")


class UsageFilters(Reply):
    agent_id: str | None = None
    microdao_id: str | None = None
    kind: Literal["llm", "tool", "all"] = "all"


class UsageReport(Reply):
    """``GET /internal/llm/usage``: totals and series for a period, from the usage ledger's aggregates."""

    model_config = ConfigDict(populate_by_name=True)

    date_from: str = Field(alias="from", description="First day (YYYY-MM-DD, UTC).")
    date_to: str = Field(alias="to", description="Last day, included.")
    group_by: list[Literal["day", "model", "agent"]]
    source: str = Field(description="The ledger partition read (`AGENT#...`, `MICRODAO#...` or `MONTH#*`).")
    totals: UsageTotals
    series: list[UsageSeriesPoint]
    filters: UsageFilters
