"""The registry over the Model Context Protocol: streamable HTTP, stateless, JSON responses.

One POST carries one JSON-RPC message. Requests get a JSON-RPC response with HTTP 200 (errors included:
method not found, invalid params, missing or invalid identity headers); notifications get 202 with no
body; a body that is not one JSON-RPC 2.0 request or notification (not JSON, nested too deeply, a batch,
a JSON-RPC response — this server never sends requests) gets 400 with a JSON-RPC error whose id is
null. No session id is issued (every request stands alone, as a Lambda must), so clients do not open
the GET stream. The caller's identity comes from headers (``X-Agent-Id``,
``X-Microdao-Id``, optional ``X-Channel-Id``) and goes through the same permission check as
``POST /internal/tools/call``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from daarion_common import __version__
from daarion_contracts.tools import JsonRpcRequest, McpToolCallParams, ToolCallRequest
from daarion_contracts.types import Identifier, bad_strings
from toolcore import formats
from toolcore.service import Invocation, ToolService

SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST = SUPPORTED_VERSIONS[0]

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602

# header -> (its name in messages, the identity it carries)
IDENTITY_HEADERS = {
    b"x-agent-id": ("X-Agent-Id", "agent_id"),
    b"x-microdao-id": ("X-Microdao-Id", "microdao_id"),
    b"x-channel-id": ("X-Channel-Id", "channel_id"),
}
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass(frozen=True)
class Reply:
    """What ``POST /mcp`` answers: a JSON-RPC response, with HTTP 200 — or 400 when the body is not one
    JSON-RPC 2.0 message at all (parse error, invalid request: then ``id`` is null)."""

    body: dict[str, Any]
    status: int = 200


def _error(msg_id: Any, code: int, message: str, fields: list[dict[str, str]] | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["data"] = {"fields": fields}
    return Reply({"jsonrpc": "2.0", "id": msg_id, "error": error}, 400 if msg_id is None else 200)


def _result(msg_id: Any, result: dict[str, Any]) -> Reply:
    return Reply({"jsonrpc": "2.0", "id": msg_id, "result": result})


def _summary(fields: list[dict[str, str]]) -> str:
    return "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])


def _fields(exc: ValidationError, *root: str) -> list[dict[str, str]]:
    return [
        {"field": ".".join([*root, *(str(p) for p in e["loc"])]), "message": e["msg"].removeprefix("Value error, ")}
        for e in exc.errors()
    ]


def read(raw: bytes) -> JsonRpcRequest | Reply:
    """The message in ``raw``, or the 400 reply saying why it is not one JSON-RPC 2.0 message."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse (thousands of levels)
        return _error(None, PARSE_ERROR, "Parse error: the body is not JSON (or is nested too deeply).")
    if not isinstance(message, dict):
        return _error(None, INVALID_REQUEST, "Expected one JSON-RPC 2.0 message (batches are not supported).")
    try:
        return JsonRpcRequest.model_validate(message)
    except ValidationError as exc:
        fields = _fields(exc)
        return _error(None, INVALID_REQUEST, f"Invalid request: {_summary(fields)}", fields)


def _identity(headers: Iterable[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The identity headers present, validated like every identifier (UTF-8, no control characters, ...)."""
    found: dict[str, str] = {}
    problems: list[dict[str, str]] = []
    for name, value in headers:
        spec = IDENTITY_HEADERS.get(name.lower())
        if spec is None or spec[1] in found:
            continue
        field = f"header.{name.lower().decode()}"
        try:
            found[spec[1]] = _IDENTIFIER.validate_python(value.decode("utf-8"))
        except UnicodeDecodeError:
            problems.append({"field": field, "message": "must be UTF-8"})
        except ValidationError as exc:
            problems.extend({"field": field, "message": f["message"]} for f in _fields(exc)[:1])
    return found, problems


def handle(
    request: JsonRpcRequest,
    *,
    service: ToolService,
    headers: Iterable[tuple[bytes, bytes]] = (),
    invocation: Invocation | None = None,
) -> Reply | None:
    """The JSON-RPC response to ``request``, or None for a notification (answered 202)."""
    if "id" not in request.model_fields_set:  # a notification (notifications/initialized, cancelled, ...)
        return None
    msg_id, method, params = request.id, request.method, request.params or {}
    identity, problems = _identity(headers)
    if problems:
        names = {f"header.{h.decode()}": shown for h, (shown, _) in IDENTITY_HEADERS.items()}
        said = "; ".join(f"{names[p['field']]}: {p['message']}" for p in problems)
        return _error(msg_id, INVALID_REQUEST, f"Invalid identity header: {said}", problems)
    if method not in ("tools/call",):  # tools/call's params are checked by their model below
        found = [{"field": ".".join(["params", *map(str, loc)]), "message": m} for loc, m in bad_strings(params)]
        if found:
            return _error(msg_id, INVALID_PARAMS, f"Invalid params: {_summary(found)}", found[:20])

    if method == "initialize":
        asked = params.get("protocolVersion")
        return _result(
            msg_id,
            {
                "protocolVersion": asked if asked in SUPPORTED_VERSIONS else LATEST,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "daarion-toolcore", "title": "DAARION Toolcore", "version": __version__},
                "instructions": "DAARION tools. Identify the agent with X-Agent-Id and X-Microdao-Id headers.",
            },
        )
    if method == "ping":
        return _result(msg_id, {})
    if method not in ("tools/list", "tools/call"):
        return _error(msg_id, METHOD_NOT_FOUND, f"Method not found: {method}")
    agent_id, microdao_id = identity.get("agent_id"), identity.get("microdao_id")
    if not agent_id or not microdao_id:
        required = {b"x-agent-id": "agent_id", b"x-microdao-id": "microdao_id"}
        missing = [{"field": f"header.{h.decode()}", "message": "required"} for h, key in required.items()
                   if key not in identity]  # fmt: skip
        return _error(msg_id, INVALID_REQUEST, "X-Agent-Id and X-Microdao-Id headers are required.", missing)

    if method == "tools/list":
        tools = service.visible_tools(agent_id, microdao_id)
        return _result(msg_id, {"tools": [formats.mcp(t).model_dump(mode="json", exclude_unset=True) for t in tools]})

    try:
        call = McpToolCallParams.model_validate(params)
    except ValidationError as exc:
        fields = _fields(exc, "params")
        return _error(msg_id, INVALID_PARAMS, f"Invalid params: {_summary(fields)}", fields)
    channel_id = identity.get("channel_id")
    outcome = service.call(
        ToolCallRequest(
            tool_id=call.name,
            agent_id=agent_id,
            microdao_id=microdao_id,
            args=call.arguments or {},
            context={"channel_id": channel_id, "via": "mcp"} if channel_id else {"via": "mcp"},
            idempotency_key=call.meta.idempotency_key if call.meta else None,
        ),
        invocation,
    ).response
    if not outcome.ok and outcome.error is not None and outcome.error.code == "tool_not_found":
        return _error(msg_id, INVALID_PARAMS, f"Unknown tool: {call.name}")
    if outcome.ok:
        result = outcome.result
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        body: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": False}
        if isinstance(result, dict) and not outcome.truncated:
            body["structuredContent"] = result
        if outcome.truncated:
            body["_meta"] = {"truncated": True}
        return _result(msg_id, body)
    error = outcome.error
    assert error is not None
    return _result(
        msg_id,
        {"content": [{"type": "text", "text": f"{error.code}: {error.message}"}], "isError": True,
         "_meta": {"error_code": error.code}},
    )  # fmt: skip
