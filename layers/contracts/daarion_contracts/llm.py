"""The LLM Proxy's wire contract: agent-runtime's ``/internal/llm/proxy``, the OpenAI-compatible
routes, embeddings, the model catalogue and the usage API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

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

MAX_TOKENS_CAP = 200_000
# Embeddings: at most this many inputs and this many characters in all, on both embeddings routes.
MAX_EMBEDDING_INPUTS = 512
MAX_EMBEDDING_CHARS = 1_000_000


def _bounded_inputs(value: str | list[str]) -> str | list[str]:
    texts = [value] if isinstance(value, str) else value
    total = sum(len(t) for t in texts)
    if total > MAX_EMBEDDING_CHARS:
        raise ValueError(f"{total} characters in all; at most {MAX_EMBEDDING_CHARS} per request")
    if any(not t for t in texts):
        raise ValueError("an input must not be empty")
    return value


class ChatMessage(BaseModel):
    """One OpenAI-style message; fields other than these (``name``, ``tool_calls``, ``tool_call_id``) pass through."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class CallMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    agent_id: Identifier
    microdao_id: Identifier
    channel_id: Identifier | None = None


class ProxyRequest(WireModel):
    """``POST /internal/llm/proxy`` as agent-runtime sends it."""

    model: Identifier
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, gt=0, le=1, strict=True)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    metadata: CallMetadata


class ChatCompletionRequest(WireModel):
    """``POST /v1/chat/completions``: OpenAI's shape. Fields not named here pass through to the provider."""

    model_config = ConfigDict(extra="allow")

    model: Identifier
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    metadata: dict[str, Any] | None = None


class EmbeddingsRequest(WireModel):
    """``POST /v1/embeddings``: OpenAI's shape, plus ``input_type`` (e5 embeds queries and passages apart)."""

    model_config = ConfigDict(extra="allow")

    model: Identifier | None = None
    input: str | list[str] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["query", "passage"] = "passage"
    metadata: dict[str, Any] | None = None

    _bounded = field_validator("input")(_bounded_inputs)


class InternalEmbeddingsRequest(WireModel):
    """``POST /internal/llm/embeddings``: what the Memory Orchestrator sends."""

    model: Identifier | None = None
    input: list[str] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
    input_type: Literal["query", "passage"] = "passage"
    metadata: CallMetadata

    _bounded = field_validator("input")(_bounded_inputs)
