"""Clients of the LLM Proxy (base URL from LLM_PROXY_URL).

Requests are built with the contracts' request models (an invalid one raises :class:`InvalidRequest`,
status 422, before anything is sent) and answers parsed with its response models.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.errors import InvalidRequest
from daarion_contracts.llm import (
    EMBEDDINGS_PATH,
    MODELS_PATH,
    PROXY_PATH,
    InternalEmbeddings,
    InternalEmbeddingsRequest,
    ModelCatalogue,
    ProxyRequest,
    ProxyResponse,
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
