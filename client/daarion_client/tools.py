"""Clients of Toolcore (base URL from TOOLCORE_URL). Requests are built, and answers read, with the
contracts' models (``daarion_contracts.tools``)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.errors import InvalidRequest
from daarion_contracts.tools import CALL_PATH, TOOLS_PATH, OpenAIToolListing, ToolCallRequest, ToolCallResponse

SERVICE = "toolcore"


def _call_body(
    tool_id: str, agent_id: str, microdao_id: str, args: dict[str, Any], context: dict[str, Any] | None, key: str | None
) -> dict[str, Any]:
    """The request, checked here as the service would check it: a bad field raises :class:`InvalidRequest`
    (status 422, ``fields`` naming it) before anything is sent."""
    try:
        request = ToolCallRequest(
            tool_id=tool_id, agent_id=agent_id, microdao_id=microdao_id, args=args, context=context,
            # A fresh idempotency key per logical call makes the client's own retries safe for every tool.
            idempotency_key=key or str(uuid.uuid4()),
        )  # fmt: skip
    except ValidationError as exc:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        body = {"error": {"code": "invalid_request", "message": f"Invalid request: {summary}", "fields": fields}}
        raise InvalidRequest(SERVICE, 422, "invalid_request", body["error"]["message"], body=body) from None
    return request.model_dump(mode="json", exclude_unset=True)


def _listing_params(agent_id: str, microdao_id: str) -> dict[str, str]:
    return {"agent_id": agent_id, "microdao_id": microdao_id, "format": "openai"}


class ToolcoreClient(SyncCore):
    service, env_var, default_url = SERVICE, "TOOLCORE_URL", "http://127.0.0.1:7009"

    def list_tools(self, *, agent_id: str, microdao_id: str, deadline: float | None = None) -> OpenAIToolListing:
        answer = self.request("GET", TOOLS_PATH, params=_listing_params(agent_id, microdao_id), deadline=deadline)
        return OpenAIToolListing.model_validate(answer)

    def call(
        self, tool_id: str, args: dict[str, Any], *, agent_id: str, microdao_id: str,
        context: dict[str, Any] | None = None, idempotency_key: str | None = None, deadline: float | None = None,
    ) -> ToolCallResponse:  # fmt: skip
        body = _call_body(tool_id, agent_id, microdao_id, args, context, idempotency_key)
        return ToolCallResponse.model_validate(self.request("POST", CALL_PATH, json=body, deadline=deadline))


class AsyncToolcoreClient(AsyncCore):
    service, env_var, default_url = SERVICE, "TOOLCORE_URL", "http://127.0.0.1:7009"

    async def list_tools(self, *, agent_id: str, microdao_id: str, deadline: float | None = None) -> OpenAIToolListing:
        answer = await self.request("GET", TOOLS_PATH, params=_listing_params(agent_id, microdao_id), deadline=deadline)
        return OpenAIToolListing.model_validate(answer)

    async def call(
        self, tool_id: str, args: dict[str, Any], *, agent_id: str, microdao_id: str,
        context: dict[str, Any] | None = None, idempotency_key: str | None = None, deadline: float | None = None,
    ) -> ToolCallResponse:  # fmt: skip
        body = _call_body(tool_id, agent_id, microdao_id, args, context, idempotency_key)
        return ToolCallResponse.model_validate(await self.request("POST", CALL_PATH, json=body, deadline=deadline))
