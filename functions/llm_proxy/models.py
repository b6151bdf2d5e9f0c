"""Request and response models of the LLM Proxy's contract with agent-runtime."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class CallMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    agent_id: str = Field(min_length=1, max_length=200)
    microdao_id: str = Field(min_length=1, max_length=200)
    channel_id: str | None = Field(default=None, max_length=200)


class ProxyRequest(BaseModel):
    """``POST /internal/llm/proxy`` as agent-runtime sends it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    metadata: CallMetadata


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's shape. Fields not named here pass through to the provider."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=200_000)
    metadata: dict[str, Any] | None = None


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's shape, plus ``input_type`` (e5 embeds queries and passages apart)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, max_length=200)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["query", "passage"] = "passage"
    metadata: dict[str, Any] | None = None


class InternalEmbeddingsRequest(BaseModel):
    """``POST /internal/llm/embeddings``: what the Memory Orchestrator sends."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=200)
    input: list[str] = Field(min_length=1, max_length=512)
    input_type: Literal["query", "passage"] = "passage"
    metadata: CallMetadata
