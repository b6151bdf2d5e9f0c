"""Clients of the LLM Proxy (base URL from LLM_PROXY_URL)."""

from __future__ import annotations

from typing import Any

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.models import ChatResult


def _chat_body(
    model: str, messages: list[dict[str, Any]], agent_id: str, microdao_id: str, channel_id: str | None, **options: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages}
    body.update({k: v for k, v in options.items() if v is not None})
    body["metadata"] = {"agent_id": agent_id, "microdao_id": microdao_id, "channel_id": channel_id}
    return body


class LlmProxyClient(SyncCore):
    service, env_var, default_url = "llm-proxy", "LLM_PROXY_URL", "http://127.0.0.1:7007"

    def chat(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, **options: Any,
    ) -> ChatResult:  # fmt: skip
        body = _chat_body(model, messages, agent_id, microdao_id, channel_id, **options)
        return ChatResult.model_validate(self.request("POST", "/internal/llm/proxy", json=body, deadline=deadline))


class AsyncLlmProxyClient(AsyncCore):
    service, env_var, default_url = "llm-proxy", "LLM_PROXY_URL", "http://127.0.0.1:7007"

    async def chat(
        self, model: str, messages: list[dict[str, Any]], *, agent_id: str, microdao_id: str,
        channel_id: str | None = None, deadline: float | None = None, **options: Any,
    ) -> ChatResult:  # fmt: skip
        body = _chat_body(model, messages, agent_id, microdao_id, channel_id, **options)
        return ChatResult.model_validate(
            await self.request("POST", "/internal/llm/proxy", json=body, deadline=deadline)
        )
