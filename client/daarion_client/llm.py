"""Clients of the LLM Proxy (base URL from LLM_PROXY_URL).

Requests are built with the contracts' request models (an invalid one raises :class:`InvalidRequest`,
status 422, before anything is sent) and answers parsed with its response models.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.errors import ConnectionFailed, InvalidRequest, ServiceError, StreamInterrupted
from daarion_contracts.llm import (
    AGENT_HEADER,
    CHANNEL_HEADER,
    EMBEDDINGS_PATH,
    MICRODAO_HEADER,
    MODELS_PATH,
    PROXY_PATH,
    V1_CHAT_PATH,
    V1_MODELS_PATH,
    ChatCompletionRequest,
    InternalEmbeddings,
    InternalEmbeddingsRequest,
    ModelCatalogue,
    ModelList,
    ProxyRequest,
    ProxyResponse,
    TokenUsage,
)

SERVICE = "llm-proxy"


def _invalid(exc: ValidationError) -> InvalidRequest:
    """The service's own 422, raised before sending: same code, same ``fields``."""
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"].removeprefix("Value error, ")}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    message = "Invalid request: " + "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    body = {"error": {"code": "invalid_request", "message": message, "fields": fields}, "request_id": None}
    return InvalidRequest(SERVICE, 422, "invalid_request", message, body=body)


def _chat_body(
    model: str, messages: list[dict[str, Any]], agent_id: str, microdao_id: str, channel_id: str | None, **options: Any
) -> dict[str, Any]:
    try:
        request = ProxyRequest.model_validate(
            {
                "model": model,
                "messages": messages,
                **{k: v for k, v in options.items() if v is not None},
                "metadata": {"agent_id": agent_id, "microdao_id": microdao_id, "channel_id": channel_id},
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    # What was given, as given (channel_id: null included, as agent-runtime has always sent it); the
    # messages, once validated, exactly as the caller wrote them (their keys in the caller's order).
    body = request.model_dump(mode="json", exclude_unset=True)
    body["messages"] = messages
    return body


def _embeddings_body(
    texts: list[str], agent_id: str, microdao_id: str, channel_id: str | None, model: str | None, input_type: str
) -> dict[str, Any]:
    try:
        request = InternalEmbeddingsRequest.model_validate(
            {
                "model": model,
                "input": texts,
                "input_type": input_type,
                "metadata": {"agent_id": agent_id, "microdao_id": microdao_id, "channel_id": channel_id},
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    return request.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------- streaming
@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text, as the model produced it."""

    text: str
    choice: int = 0


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: ``index`` names the call; ``id`` and ``name`` come with its first piece, the
    ``arguments`` JSON arrives in pieces to be concatenated."""

    index: int
    id: str | None
    name: str | None
    arguments: str
    choice: int = 0


@dataclass(frozen=True)
class StreamDone:
    """The last event: the call's usage (the upstream's final usage chunk) and cost, who answered."""

    usage: TokenUsage | None
    cost_usd: float | None
    finish_reason: str | None
    provider: str | None
    model: str
    model_resolved: str | None
    fallback_used: bool
    request_id: str | None


StreamEvent = TextDelta | ToolCallDelta | StreamDone


def _stream_request(
    model: str, messages: list[dict[str, Any]], agent_id: str, microdao_id: str, channel_id: str | None,
    options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    """The OpenAI-compatible streamed request (validated by the contract) and the caller's headers."""
    payload = {
        "model": model,
        "messages": messages,
        **{k: v for k, v in options.items() if v is not None},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        ChatCompletionRequest.model_validate(payload)
        from pydantic import TypeAdapter

        from daarion_contracts.types import Identifier

        ids = TypeAdapter(Identifier)
        for value in (agent_id, microdao_id, channel_id):
            if value is not None:
                ids.validate_python(value)
    except ValidationError as exc:
        raise _invalid(exc) from None
    headers = {AGENT_HEADER: agent_id, MICRODAO_HEADER: microdao_id}
    if channel_id:
        headers[CHANNEL_HEADER] = channel_id
    return payload, headers


class _StreamReader:
    """Server-Sent Events of a ``chat.completion.chunk`` stream -> typed events (shared by both clients)."""

    def __init__(self, model: str, headers: httpx.Headers) -> None:
        self.model = model
        self.headers = headers
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, line: str) -> list[StreamEvent]:
        if not line.startswith("data:"):
            return []
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            return []
        error = chunk.get("error") if isinstance(chunk, dict) else None
        if isinstance(error, dict):  # the proxy's in-band error: the upstream broke off mid-stream
            code = str(error.get("code") or "stream_interrupted")
            raise StreamInterrupted(SERVICE, 502, code, str(error.get("message") or ""), body=chunk,
                                    request_id=self.headers.get("x-request-id"))  # fmt: skip
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index") or 0)
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events.append(TextDelta(delta["content"], index))
            for call in delta.get("tool_calls") or []:
                function = call.get("function") or {}
                events.append(ToolCallDelta(int(call.get("index") or 0), call.get("id"), function.get("name"),
                                            str(function.get("arguments") or ""), index))  # fmt: skip
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def interrupted(self) -> StreamInterrupted:
        return StreamInterrupted(SERVICE, 502, "stream_interrupted", "the stream ended before [DONE]",
                                 request_id=self.headers.get("x-request-id"))  # fmt: skip

    def end(self, catalogue: ModelCatalogue | None) -> StreamDone:
        usage = TokenUsage.model_validate(self.usage) if self.usage else None
        resolved = self.headers.get("x-llm-model-resolved") or None
        cost = None
        if self.usage and self.usage.get("cost_usd") is not None:
            cost = float(self.usage["cost_usd"])  # the proxy's own figure, when it sends one
        elif usage is not None and catalogue is not None:
            cost = _cost(catalogue, self.model, resolved, usage)
        return StreamDone(
            usage=usage,
            cost_usd=cost,
            finish_reason=self.finish_reason,
            provider=self.headers.get("x-llm-provider") or None,
            model=self.model,
            model_resolved=resolved,
            fallback_used=self.headers.get("x-llm-fallback") == "true",
            request_id=self.headers.get("x-request-id"),
        )


def _cost(catalogue: ModelCatalogue, model: str, resolved: str | None, usage: TokenUsage) -> float | None:
    """What the proxy charges on the buffered path: the serving model's prices (USD per 1M tokens)."""
    entries = catalogue.models
    entry = next((m for m in entries if resolved and m.physical == resolved), None)
    entry = entry or next((m for m in entries if m.model == model), None)
    if entry is None:
        return None
    return round(
        (usage.prompt_tokens * entry.price_in_usd_per_1m + usage.completion_tokens * entry.price_out_usd_per_1m)
        / 1_000_000,
        10,
    )


def context_window_of(models: ModelList, model: str) -> int | None:
    """A model's context window from ``GET /v1/models`` (its ``context_window`` field), if the proxy says."""
    for card in models.data:
        if card.id == model:
            value = getattr(card, "context_window", None)
            if value is None and card.model_extra:
                value = card.model_extra.get("context_window")
            return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
    return None


STREAM_URL_ENV = "LLM_PROXY_STREAM_URL"  # the long path (Function URL); LLM_PROXY_URL when unset


class LlmProxyClient(SyncCore):
    service, env_var, default_url = SERVICE, "LLM_PROXY_URL", "http://127.0.0.1:7007"

    def chat(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, **options: Any,
    ) -> ProxyResponse:  # fmt: skip
        body = _chat_body(model, messages, agent_id, microdao_id, channel_id, **options)
        return ProxyResponse.model_validate(self.request("POST", PROXY_PATH, json=body, deadline=deadline))

    def embeddings(
        self, texts: list[str], *, agent_id: str, microdao_id: str, channel_id: str | None = None,
        model: str | None = None, input_type: str = "passage", deadline: float | None = None,
    ) -> InternalEmbeddings:  # fmt: skip
        body = _embeddings_body(texts, agent_id, microdao_id, channel_id, model, input_type)
        return InternalEmbeddings.model_validate(self.request("POST", EMBEDDINGS_PATH, json=body, deadline=deadline))

    def models(self, *, deadline: float | None = None) -> ModelCatalogue:
        return ModelCatalogue.model_validate(self.request("GET", MODELS_PATH, deadline=deadline))

    def openai_models(self, *, deadline: float | None = None) -> ModelList:
        """``GET /v1/models``: the logical models (with ``context_window`` where the proxy states it)."""
        return ModelList.model_validate(self.request("GET", V1_MODELS_PATH, deadline=deadline))

    def chat_stream(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, stream_timeout: float = 300.0,
        **options: Any,
    ) -> Iterator[StreamEvent]:  # fmt: skip
        """Stream a chat call through the long path (``LLM_PROXY_STREAM_URL``, else the proxy's URL): text and
        tool-call deltas as they come, then one :class:`StreamDone` with usage and cost. Errors before the
        first byte are the usual typed errors (429/5xx retried); a cut mid-stream raises StreamInterrupted."""
        body, caller = _stream_request(model, messages, agent_id, microdao_id, channel_id, options)
        url = (os.environ.get(STREAM_URL_ENV) or self.base_url).rstrip("/") + V1_CHAT_PATH
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._http.stream(
                    "POST", url, json=body, headers=self._headers(caller),
                    timeout=_stream_timeout(self, deadline, stream_timeout),
                ) as response:  # fmt: skip
                    if response.status_code >= 400:
                        response.read()
                        _, error, delay = self._outcome(attempt, deadline, response, None)
                        if not self._may_retry(attempt, delay, deadline):
                            raise error
                        time.sleep(delay)
                        continue
                    reader = _StreamReader(model, response.headers)
                    try:
                        for line in response.iter_lines():
                            yield from reader.feed(line)
                            if reader.done:
                                break
                    except httpx.TransportError as exc:
                        raise reader.interrupted() from exc
                    if not reader.done:
                        raise reader.interrupted()
                    yield reader.end(self._catalogue(deadline) if reader.usage else None)
                    return
            except httpx.TransportError as exc:  # before any byte: retried like any call
                _, error, delay = self._outcome(attempt, deadline, None, exc)
                if not self._may_retry(attempt, delay, deadline):
                    raise error from exc
                time.sleep(delay)

    def _catalogue(self, deadline: float | None) -> ModelCatalogue | None:
        if getattr(self, "_models_cache", None) is None:
            try:
                self._models_cache = self.models(deadline=deadline)
            except (ServiceError, ConnectionFailed):
                return None  # the cost stays unknown (None); the usage is still given
        return self._models_cache


def _stream_timeout(core: Any, deadline: float | None, read_s: float) -> httpx.Timeout:
    """Connect/write within the client's timeout; between two chunks up to ``read_s`` (a reasoning model
    may think long before its first token) — all within the caller's deadline."""
    base = core._timeout(deadline)
    read = read_s if deadline is None else max(0.001, min(read_s, deadline - time.monotonic()))
    return httpx.Timeout(base, read=read)


class AsyncLlmProxyClient(AsyncCore):
    service, env_var, default_url = SERVICE, "LLM_PROXY_URL", "http://127.0.0.1:7007"

    async def chat(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, **options: Any,
    ) -> ProxyResponse:  # fmt: skip
        body = _chat_body(model, messages, agent_id, microdao_id, channel_id, **options)
        return ProxyResponse.model_validate(await self.request("POST", PROXY_PATH, json=body, deadline=deadline))

    async def embeddings(
        self, texts: list[str], *, agent_id: str, microdao_id: str, channel_id: str | None = None,
        model: str | None = None, input_type: str = "passage", deadline: float | None = None,
    ) -> InternalEmbeddings:  # fmt: skip
        body = _embeddings_body(texts, agent_id, microdao_id, channel_id, model, input_type)
        return InternalEmbeddings.model_validate(
            await self.request("POST", EMBEDDINGS_PATH, json=body, deadline=deadline)
        )

    async def models(self, *, deadline: float | None = None) -> ModelCatalogue:
        return ModelCatalogue.model_validate(await self.request("GET", MODELS_PATH, deadline=deadline))

    async def openai_models(self, *, deadline: float | None = None) -> ModelList:
        """``GET /v1/models``: the logical models (with ``context_window`` where the proxy states it)."""
        return ModelList.model_validate(await self.request("GET", V1_MODELS_PATH, deadline=deadline))

    async def chat_stream(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, stream_timeout: float = 300.0,
        **options: Any,
    ) -> AsyncIterator[StreamEvent]:  # fmt: skip
        """The async twin of :meth:`LlmProxyClient.chat_stream`."""
        body, caller = _stream_request(model, messages, agent_id, microdao_id, channel_id, options)
        url = (os.environ.get(STREAM_URL_ENV) or self.base_url).rstrip("/") + V1_CHAT_PATH
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._http.stream(
                    "POST", url, json=body, headers=self._headers(caller),
                    timeout=_stream_timeout(self, deadline, stream_timeout),
                ) as response:  # fmt: skip
                    if response.status_code >= 400:
                        await response.aread()
                        _, error, delay = self._outcome(attempt, deadline, response, None)
                        if not self._may_retry(attempt, delay, deadline):
                            raise error
                        await asyncio.sleep(delay)
                        continue
                    reader = _StreamReader(model, response.headers)
                    try:
                        async for line in response.aiter_lines():
                            for event in reader.feed(line):
                                yield event
                            if reader.done:
                                break
                    except httpx.TransportError as exc:
                        raise reader.interrupted() from exc
                    if not reader.done:
                        raise reader.interrupted()
                    yield reader.end(await self._catalogue(deadline) if reader.usage else None)
                    return
            except httpx.TransportError as exc:
                _, error, delay = self._outcome(attempt, deadline, None, exc)
                if not self._may_retry(attempt, delay, deadline):
                    raise error from exc
                await asyncio.sleep(delay)

    async def _catalogue(self, deadline: float | None) -> ModelCatalogue | None:
        if getattr(self, "_models_cache", None) is None:
            try:
                self._models_cache = await self.models(deadline=deadline)
            except (ServiceError, ConnectionFailed):
                return None
        return self._models_cache
