"""Interoperability: the official MCP Python SDK's client lists and calls tools through Toolcore's
``POST /mcp`` (the app served on loopback by uvicorn), with the same permissions as the HTTP routes.
Also the endpoint's JSON-RPC edges, through the Lambda handler with API Gateway v2 events."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
import uvicorn

from devstack.stack import free_port
from tests.fixtures.toolcore import TEST_PACKAGE, invoke, make_service, mcp_event, tool

READ_ONLY = {"read_only": True, "destructive": False, "idempotent": True}
RESULT = {"type": "object", "properties": {"echo": {"type": "object"}}, "required": ["echo"]}


@pytest.fixture
def toolcore_server(serve_with, tool_target) -> Iterator[str]:
    serve_with(
        make_service(
            tool("demo.echo", output_schema=RESULT, hints=READ_ONLY),
            tool("demo.http", "http", tool_target.url("/projects")),
            tool("demo.helion-only", allowed_agents=["helion"]),
            tool("demo.broken", target=f"{TEST_PACKAGE}:tool_error"),
            allow=[tool_target.host_port],
        )
    )
    from toolcore.app import app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run(coro):
    """Run the async client in its own thread: asyncio.run on the main thread would leave it without the
    event loop Mangum (the Lambda handler, used by later tests) expects there."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def with_client(url: str, work, *, agent: str = "sofia", secret: str = "dev-secret-token", mode: str = "auto"):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"X-Internal-Secret": secret, "X-Agent-Id": agent, "X-Microdao-Id": "dao-1"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        return await work(client)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_lists_only_permitted_tools_with_annotations(toolcore_server, mode):
    async def work(client):
        return await client.list_tools()

    listed = run(with_client(toolcore_server, work, mode=mode))
    by_name = {t.name: t for t in listed.tools}
    assert set(by_name) == {"demo.echo", "demo.http", "demo.broken"}  # not demo.helion-only
    assert by_name["demo.echo"].annotations.read_only_hint is True
    assert by_name["demo.echo"].output_schema["required"] == ["echo"]


def test_sdk_client_calls_python_and_http_tools(toolcore_server):
    async def work(client):
        return (
            await client.call_tool("demo.echo", {"q": "hi"}),
            await client.call_tool("demo.http", {}),
        )

    echo, http = run(with_client(toolcore_server, work))
    assert echo.is_error is False
    assert echo.structured_content["echo"] == {"q": "hi"}
    assert http.is_error is False
    assert http.structured_content == {"projects": [{"id": "p1", "name": "Garden"}]}
    assert "Garden" in http.content[0].text


def test_sdk_client_sees_permission_and_tool_errors(toolcore_server):
    async def work(client):
        return (
            await client.call_tool("demo.helion-only", {}),
            await client.call_tool("demo.broken", {}),
        )

    denied, broken = run(with_client(toolcore_server, work))
    assert denied.is_error is True and "permission_denied" in denied.content[0].text
    assert broken.is_error is True and "upstream_error" in broken.content[0].text

    async def as_helion(client):
        return await client.call_tool("demo.helion-only", {"a": 1})

    allowed = run(with_client(toolcore_server, as_helion, agent="helion"))
    assert allowed.is_error is False


def test_sdk_client_without_the_internal_secret_is_refused(toolcore_server):
    async def work(client):
        return await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017 - the SDK's error type for a 401 is its own business
        run(with_client(toolcore_server, work, secret="wrong"))


# ---------------------------------------------------------------- the endpoint's edges, through the handler


@pytest.fixture
def mcp_service(serve_with):
    return serve_with(make_service(tool("demo.echo")))


def rpc(lambda_context, message, **headers):
    headers.setdefault("x_agent_id", "sofia")
    headers.setdefault("x_microdao_id", "dao-1")
    return invoke(mcp_event(message, **headers), lambda_context)


def test_initialize_negotiates_a_supported_version(mcp_service, lambda_context):
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    msg = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    status, headers, body = rpc(lambda_context, msg)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert body["result"]["protocolVersion"] == "2025-06-18"
    assert body["result"]["capabilities"]["tools"] == {"listChanged": False}
    assert "mcp-session-id" not in headers  # stateless
    msg["params"]["protocolVersion"] = "1999-01-01"
    assert rpc(lambda_context, msg)[2]["result"]["protocolVersion"] == "2025-11-25"


def test_notifications_are_accepted_with_202_and_no_body(mcp_service, lambda_context):
    status, _, body = rpc(lambda_context, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert status == 202 and body is None


def test_unknown_method_and_unknown_tool_are_json_rpc_errors(mcp_service, lambda_context):
    assert rpc(lambda_context, {"jsonrpc": "2.0", "id": 2, "method": "server/discover"})[2]["error"]["code"] == -32601
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}
    assert rpc(lambda_context, call)[2]["error"]["code"] == -32602


def test_identity_headers_are_required_for_tools(mcp_service, lambda_context):
    msg = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}
    _, _, body = rpc(lambda_context, msg, x_agent_id="")
    assert body["error"]["code"] == -32600 and "X-Agent-Id" in body["error"]["message"]


def test_malformed_json_is_a_parse_error(mcp_service, lambda_context):
    event = mcp_event({})
    event["body"] = "{nope"
    status, _, body = invoke(event, lambda_context)
    assert status == 400 and body["error"]["code"] == -32700
