"""Toolcore HTTP function: FastAPI app and its Lambda handler.

Routes: ``GET /internal/tools`` (what this agent may call, native/openai/mcp), ``POST
/internal/tools/call`` (one call: ``{ok, result, error, tool_id, latency_ms}``, HTTP 200 whatever the
tool did), ``POST /mcp`` (the Model Context Protocol). All behind X-Internal-Secret.

The routes are ``async`` and call the (blocking) service on the event loop: Lambda runs one invocation
per container at a time, and handing each call to a worker thread instead cost ~0.6 ms per call (anyio
starts a thread per invocation under Mangum). Under uvicorn this serialises requests, which local use
and tests can afford.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from daarion_common.errors import request_id_of
from daarion_common.http_app import create_app, lambda_handler
from daarion_contracts.tools import ToolCallRequest
from toolcore import formats, mcp_server, service

app = create_app(
    "toolcore",
    openapi_path="/internal/tools/openapi.json",
    health_path="/internal/tools/health",
    description="Tool registry, permission checks and safe execution.",
)

Id = Annotated[str, Query(min_length=1, max_length=200)]


@app.get("/internal/tools")
async def list_tools(
    agent_id: Id, microdao_id: Id, format: Literal["native", "openai", "mcp"] = "native"
) -> dict[str, Any]:
    tools = service.current().visible_tools(agent_id, microdao_id)
    return formats.render(tools, format)


def _server_timing(timings: service.CallTimings) -> str:
    return f'upstream;dur={timings.upstream_ms:.3f}, aws;dur={timings.aws_ms:.3f};desc="{timings.aws_calls} calls"'


@app.post("/internal/tools/call")
async def call_tool(request: ToolCallRequest, http_request: Request) -> JSONResponse:
    result = service.current().call(
        service.CallRequest(
            tool_id=request.tool_id,
            agent_id=request.agent_id,
            microdao_id=request.microdao_id,
            args=request.args,
            context=request.context,
            idempotency_key=request.idempotency_key,
            request_id=request_id_of(http_request),
            lambda_context=http_request.scope.get("aws.context"),
        )
    )
    return JSONResponse(result.body, headers={"Server-Timing": _server_timing(result.timings)})


@app.post("/mcp")
async def mcp(http_request: Request) -> Response:
    raw = await http_request.body()
    try:
        message = json.loads(raw)
    except ValueError:
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": mcp_server.PARSE_ERROR, "message": "Parse error"}}
        return JSONResponse(body, status_code=400)
    headers = http_request.headers
    reply = mcp_server.handle(
        message,
        service=service.current(),
        agent_id=headers.get("x-agent-id"),
        microdao_id=headers.get("x-microdao-id"),
        channel_id=headers.get("x-channel-id"),
        request_id=request_id_of(http_request),
        lambda_context=http_request.scope.get("aws.context"),
    )
    if reply is None:
        return Response(status_code=202)
    return JSONResponse(reply)


@app.get("/mcp", include_in_schema=False)
def mcp_stream() -> Response:
    """Stateless server: no server-initiated stream to open."""
    return Response(status_code=405, headers={"Allow": "POST"})


handler = lambda_handler(app)
