"""Clients of the Memory Orchestrator (base URL from AGENT_MEMORY_URL).

Requests are built with the contracts' request models (``daarion_contracts.memory``), so a bad argument
is refused here, before any network call, as the :class:`~daarion_client.errors.InvalidRequest` the
service would have answered; answers are parsed with the contracts' response models.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from daarion_client._http import AsyncCore, SyncCore
from daarion_client.errors import InvalidRequest
from daarion_contracts.errors import ErrorBody, ErrorDetail, FieldError
from daarion_contracts.memory import (
    QUERY_PATH,
    STORE_PATH,
    MemoryItem,
    QueryRequest,
    QueryResponse,
    StoreRequest,
    StoreResponse,
)

SERVICE = "memory"
_Request = TypeVar("_Request", bound=BaseModel)


def _build(model: type[_Request], **fields: Any) -> dict[str, Any]:
    """The JSON body of ``model`` (None fields left out); a field the service would refuse raises now."""
    try:
        request = model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        found = [FieldError(field=".".join(str(p) for p in e["loc"]) or "body", message=e["msg"]) for e in exc.errors()]
        summary = "; ".join(f"{f.field}: {f.message}" for f in found[:5])
        body = ErrorBody(error=ErrorDetail(code="invalid_request", message=f"Invalid request: {summary}", fields=found))
        raise InvalidRequest(
            SERVICE, 422, "invalid_request", body.error.message, body=body.model_dump(mode="json", exclude_none=True)
        ) from exc
    return request.model_dump(mode="json", exclude_none=True)


def _query_body(
    query: str, agent_id: str, microdao_id: str, channel_id: str | None, limit: int, kinds: list[str] | None
) -> dict[str, Any]:
    return _build(
        QueryRequest, agent_id=agent_id, microdao_id=microdao_id, channel_id=channel_id, query=query, limit=limit,
        kinds=kinds or None,
    )  # fmt: skip


def _store_body(agent_id: str, microdao_id: str, channel_id: str | None, kind: str, content: Any) -> dict[str, Any]:
    return _build(
        StoreRequest, agent_id=agent_id, microdao_id=microdao_id, channel_id=channel_id, kind=kind, content=content
    )


def _items(answer: Any) -> list[MemoryItem]:
    return QueryResponse.model_validate(answer).items


def _stored_id(answer: Any) -> str:
    return StoreResponse.model_validate(answer).id


class MemoryClient(SyncCore):
    service, env_var, default_url = SERVICE, "AGENT_MEMORY_URL", "http://127.0.0.1:7008"

    def query(
        self, query: str, *, agent_id: str, microdao_id: str, channel_id: str | None = None, limit: int = 5,
        kinds: list[str] | None = None, deadline: float | None = None,
    ) -> list[MemoryItem]:  # fmt: skip
        body = _query_body(query, agent_id, microdao_id, channel_id, limit, kinds)
        return _items(self.request("POST", QUERY_PATH, json=body, deadline=deadline))

    def store(
        self, content: Any, *, agent_id: str, microdao_id: str, channel_id: str | None = None,
        kind: str = "conversation", deadline: float | None = None,
    ) -> str:  # fmt: skip
        body = _store_body(agent_id, microdao_id, channel_id, kind, content)
        return _stored_id(self.request("POST", STORE_PATH, json=body, deadline=deadline))


class AsyncMemoryClient(AsyncCore):
    service, env_var, default_url = SERVICE, "AGENT_MEMORY_URL", "http://127.0.0.1:7008"

    async def query(
        self, query: str, *, agent_id: str, microdao_id: str, channel_id: str | None = None, limit: int = 5,
        kinds: list[str] | None = None, deadline: float | None = None,
    ) -> list[MemoryItem]:  # fmt: skip
        body = _query_body(query, agent_id, microdao_id, channel_id, limit, kinds)
        return _items(await self.request("POST", QUERY_PATH, json=body, deadline=deadline))

    async def store(
        self, content: Any, *, agent_id: str, microdao_id: str, channel_id: str | None = None,
        kind: str = "conversation", deadline: float | None = None,
    ) -> str:  # fmt: skip
        body = _store_body(agent_id, microdao_id, channel_id, kind, content)
        return _stored_id(await self.request("POST", STORE_PATH, json=body, deadline=deadline))
