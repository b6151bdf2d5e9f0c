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

from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from daarion_common.errors import request_id_of
from daarion_common.http_app import create_app, lambda_handler
from daarion_contracts import errors
from daarion_contracts.tools import (
    CALL_PATH,
    HEALTH_PATH,
    MCP_PATH,
    OPENAPI_PATH,
    TOOLS_PATH,
    JsonRpcRequest,
    JsonRpcResponse,
    McpToolCallParams,
    ToolCallRequest,
    ToolCallResponse,
    ToolListingResponse,
)
from daarion_contracts.types import Identifier
from toolcore import formats, mcp_server, service

app = create_app(
    "toolcore",
    openapi_path=OPENAPI_PATH,
    health_path=HEALTH_PATH,
    description="Tool registry, permission checks and safe execution.",
)
# The container's service, built once from its parts (each read from the environment when first used).
# A test gives the app another service (`app.state.service = ToolService(registry, ...)`).
app.state.service = service.ToolService()


def _service(request: Request) -> service.ToolService:
    return request.app.state.service  # type: ignore[no-any-return]


QueryId = Annotated[Identifier, Query()]

# Toolcore's own codes for the shared statuses (the contracts' CODES list every service's).
_CODES = {
    "r422": "`invalid_request`: a field is invalid (`fields` names each one, e.g. `agent_id`, `args.x`, "
    "`query.agent_id`)",
    "r500": "`internal`: an unexpected error, logged (for example an invalid tool registry)",
    "r503": "`auth_unconfigured`: no internal secret is configured or it cannot be read",
}


@app.get(
    TOOLS_PATH,
    response_model=ToolListingResponse,
    response_model_exclude_unset=True,
    responses=errors.responses(401, 422, 500, 503, **_CODES),
    summary="The tools this agent may call in this microDAO, in Toolcore's, OpenAI's or MCP's format",
)
async def list_tools(
    request: Request, agent_id: QueryId, microdao_id: QueryId, format: Literal["native", "openai", "mcp"] = "native"
) -> Any:
    tools = _service(request).visible_tools(agent_id, microdao_id)
    return formats.render(tools, format)


def _server_timing(timings: service.CallTimings) -> str:
    return f'upstream;dur={timings.upstream_ms:.3f}, aws;dur={timings.aws_ms:.3f};desc="{timings.aws_calls} calls"'


@app.post(
    CALL_PATH,
    response_model=ToolCallResponse,
    responses={
        200: {
            "description": "The call's outcome, whatever the tool did (`ok: false` with `error` when it failed).",
            "headers": {"Server-Timing": {"description": "upstream and AWS time", "schema": {"type": "string"}}},
        },
        **errors.responses(400, 401, 422, 500, 503, **_CODES),
    },
    summary="Call one tool (permission check, argument check, execution, audit)",
)
async def call_tool(request: ToolCallRequest, http_request: Request) -> JSONResponse:
    invocation = service.Invocation(request_id_of(http_request), http_request.scope.get("aws.context"))
    result = _service(http_request).call(request, invocation)
    return JSONResponse(result.response.to_body(), headers={"Server-Timing": _server_timing(result.timings)})


_JSON_RPC_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/JsonRpcResponse"}}}


@app.post(
    MCP_PATH,
    response_model=JsonRpcResponse,
    responses={
        200: {"description": "The JSON-RPC response (a JSON-RPC error included) to a request."},
        202: {"description": "A notification, accepted; no body."},
        400: {
            "description": "Not one JSON-RPC 2.0 request or notification: a JSON-RPC error with `id` null "
            "(-32700 parse error, -32600 invalid request).",
            "content": _JSON_RPC_BODY,
        },
        **errors.responses(401, 500, 503, **_CODES),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JsonRpcRequest"}}},
        }
    },
    summary="The Model Context Protocol (streamable HTTP, stateless, JSON responses)",
    description="One JSON-RPC 2.0 message per POST: `initialize`, `ping`, `tools/list`, `tools/call` "
    "(params: `McpToolCallParams`). The agent is named by the `X-Agent-Id` and `X-Microdao-Id` headers "
    "(and optionally `X-Channel-Id`), validated like every identifier.",
)
async def mcp(http_request: Request) -> Response:
    message = mcp_server.read(await http_request.body())
    if isinstance(message, mcp_server.Reply):
        return JSONResponse(message.body, status_code=message.status)
    reply = mcp_server.handle(
        message,
        service=_service(http_request),
        headers=http_request.headers.raw,
        invocation=service.Invocation(request_id_of(http_request), http_request.scope.get("aws.context")),
    )
    if reply is None:
        return Response(status_code=202)
    return JSONResponse(reply.body, status_code=reply.status)


def _declare_models() -> None:
    """Put the JSON-RPC request model (read by hand, not by FastAPI) among the document's schemas."""
    from pydantic.json_schema import models_json_schema

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = original()
            models = [(JsonRpcRequest, "validation"), (McpToolCallParams, "validation")]
            _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
            document.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_declare_models()


@app.get(MCP_PATH, include_in_schema=False)
def mcp_stream() -> Response:
    """Stateless server: no server-initiated stream to open."""
    return Response(status_code=405, headers={"Allow": "POST"})


handler = lambda_handler(app)
