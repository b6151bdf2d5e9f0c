"""The registry over the Model Context Protocol: streamable HTTP, stateless, JSON responses.

One POST carries one JSON-RPC message. Requests get a JSON body; notifications and responses get
202 with no body. No session id is issued (every request stands alone, as a Lambda must), so clients
do not open the GET stream. The caller's identity comes from headers (``X-Agent-Id``,
``X-Microdao-Id``, optional ``X-Channel-Id``) and goes through the same permission check as
``POST /internal/tools/call``.
"""

from __future__ import annotations

import json
from typing import Any

from daarion_common import __version__
from toolcore import formats
from toolcore.service import CallRequest, ToolService

SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST = SUPPORTED_VERSIONS[0]

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602


def _error(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def _result(msg_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def handle(
    message: Any,
    *,
    service: ToolService,
    agent_id: str | None,
    microdao_id: str | None,
    channel_id: str | None = None,
    request_id: str | None = None,
    lambda_context: Any = None,
) -> dict[str, Any] | None:
    """The JSON-RPC response to ``message``, or None for a notification or a response."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return _error(None, INVALID_REQUEST, "Expected one JSON-RPC 2.0 message (batches are not supported).")
    method = message.get("method")
    if "id" not in message:  # a notification (notifications/initialized, cancelled, ...) or a response
        return None
    msg_id = message["id"]
    if not isinstance(method, str):
        return _error(msg_id, INVALID_REQUEST, "Missing method.")
    params = message.get("params") or {}
    if not isinstance(params, dict):
        return _error(msg_id, INVALID_PARAMS, "params must be an object.")

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
    if not agent_id or not microdao_id or len(agent_id) > 200 or len(microdao_id) > 200:
        return _error(msg_id, INVALID_REQUEST, "X-Agent-Id and X-Microdao-Id headers are required (<= 200 chars).")

    if method == "tools/list":
        tools = service.visible_tools(agent_id, microdao_id)
        return _result(msg_id, {"tools": [formats.mcp(t) for t in tools]})

    name = params.get("name")
    arguments = params.get("arguments") or {}
    if not isinstance(name, str) or not name or len(name) > 200:
        return _error(msg_id, INVALID_PARAMS, "params.name is required (at most 200 characters).")
    if not isinstance(arguments, dict):
        return _error(msg_id, INVALID_PARAMS, "params.arguments must be an object.")
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    key = meta.get("idempotency_key") if isinstance(meta.get("idempotency_key"), str) else None
    outcome = service.call(
        CallRequest(
            tool_id=name,
            agent_id=agent_id,
            microdao_id=microdao_id,
            args=arguments,
            context={"channel_id": channel_id, "via": "mcp"} if channel_id else {"via": "mcp"},
            idempotency_key=key,
            request_id=request_id,
            lambda_context=lambda_context,
        )
    ).body
    if not outcome["ok"] and outcome["error"]["code"] == "tool_not_found":
        return _error(msg_id, INVALID_PARAMS, f"Unknown tool: {name}")
    if outcome["ok"]:
        result = outcome["result"]
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        body: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": False}
        if isinstance(result, dict) and not outcome.get("truncated"):
            body["structuredContent"] = result
        if outcome.get("truncated"):
            body["_meta"] = {"truncated": True}
        return _result(msg_id, body)
    error = outcome["error"]
    return _result(
        msg_id,
        {"content": [{"type": "text", "text": f"{error['code']}: {error['message']}"}], "isError": True,
         "_meta": {"error_code": error["code"]}},
    )  # fmt: skip
