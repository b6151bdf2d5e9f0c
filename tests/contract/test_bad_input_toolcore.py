"""Toolcore's answer to every class of bad input, route by route, through the real Lambda handler with
API Gateway v2 events: the HTTP status, the error code and the field named.

``POST /internal/tools/call`` and ``GET /internal/tools`` answer the common error body (422
``invalid_request`` naming each field, 400 ``invalid_json``). ``POST /mcp`` answers JSON-RPC: 400 with a
JSON-RPC error (id null) when the body is not one JSON-RPC message, otherwise 200 with a JSON-RPC error
naming the field in ``error.data.fields`` — and no tool is called.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from daarion_contracts.tools import MAX_ARGS_BYTES, MAX_CONTEXT_BYTES
from tests.fixtures.toolcore import TEST_PACKAGE, _calls, call_event, invoke, list_event, make_service, mcp_event, tool

AGENT, DAO = "agent:sofia", "microdao:7"
NUL, SURROGATE = "a\x00b", "a\ud800b"  # json.dumps sends the surrogate as the escape "\ud800"
LONG = "x" * 201
DEEP = "[" * 10_000 + "]" * 10_000


@pytest.fixture(autouse=True)
def toolcore(serve_with: Any) -> Any:
    return serve_with(
        make_service(
            tool("demo.echo"),
            tool("demo.limited", input_schema={"type": "object", "properties": {"limit": {"maximum": 100}}}),
            tool("demo.unencodable", target=f"{TEST_PACKAGE}:unencodable"),
        )
    )


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``body`` with ``value`` at the dotted ``path`` (``args.q``, ``context.channel_id``)."""
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return body


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    body.pop(key)
    return body


def call_body(**more: Any) -> dict[str, Any]:
    return {"tool_id": "demo.echo", "agent_id": AGENT, "microdao_id": DAO, "args": {"q": "hi"}, **more}


def post_call(lambda_context: Any, body: dict[str, Any] | None = None, raw: str | None = None) -> tuple[int, Any]:
    event = call_event(body or {})
    if raw is not None:
        event["body"] = raw
    status, _, answer = invoke(event, lambda_context)
    return status, answer


def fields_of(answer: dict[str, Any]) -> list[str]:
    return [f["field"] for f in answer["error"].get("fields") or []]


# ---------------------------------------------------------------- POST /internal/tools/call

ID_FIELDS = ["tool_id", "agent_id", "microdao_id", "idempotency_key", "context.channel_id"]
TEXT_FIELDS = [*ID_FIELDS, "args.q", "args.nested.deeper", "context.note"]

CALL_CASES = [
    *[(f"NUL in {f}", _set(call_body(), f, NUL), f) for f in TEXT_FIELDS],
    *[(f"lone surrogate in {f}", _set(call_body(), f, SURROGATE), f) for f in TEXT_FIELDS],
    ("NUL in a list inside args", call_body(args={"tags": ["ok", NUL]}), "args.tags.1"),
    ("NUL in a key of args", call_body(args={NUL: 1}), "args"),
    *[
        (f"control character {c!r} in {f}", _set(call_body(), f, f"a{c}b"), f)
        for f in ID_FIELDS
        for c in ("\x01", "\x1f", "\x7f", "\x85")
    ],
    *[(f"over-long {f}", _set(call_body(), f, LONG), f) for f in ID_FIELDS],
    *[(f"empty {f}", _set(call_body(), f, ""), f) for f in ("tool_id", "agent_id", "microdao_id")],
    *[(f"blank {f}", _set(call_body(), f, "   "), f) for f in ("tool_id", "agent_id", "microdao_id")],
    ("number as agent_id", call_body(agent_id=10), "agent_id"),
    ("boolean as microdao_id", call_body(microdao_id=True), "microdao_id"),
    ("null tool_id", call_body(tool_id=None), "tool_id"),
    ("args a string", call_body(args="x"), "args"),
    ("args a list", call_body(args=[1]), "args"),
    ("context a string", call_body(context="x"), "context"),
    ("number as idempotency_key", call_body(idempotency_key=10), "idempotency_key"),
    *[(f"missing {f}", _without(call_body(), f), f) for f in ("tool_id", "agent_id", "microdao_id")],
    ("unknown field", call_body(extra=1), "extra"),
    ("args over the size bound", call_body(args={"blob": "x" * MAX_ARGS_BYTES}), "args"),
    ("context over the size bound", call_body(context={"note": "x" * MAX_CONTEXT_BYTES}), "context"),
    ("args nested deeper than 32", call_body(args={"x": json.loads("[" * 40 + "]" * 40)}), "args.x.0"),
]


@pytest.mark.parametrize(("case", "body", "field"), CALL_CASES, ids=[c[0] for c in CALL_CASES])
def test_call_refuses(lambda_context: Any, case: str, body: dict[str, Any], field: str) -> None:
    calls_before = sum(_calls.values())
    status, answer = post_call(lambda_context, body)
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_request"
    assert any(f == field or f.startswith(field + ".") for f in fields_of(answer)), (field, fields_of(answer))
    assert sum(_calls.values()) == calls_before  # nothing was called


RAW_CALL_CASES = [
    ("JSON nested 10,000 deep", '{"tool_id": "demo.echo", "args": ' + DEEP + "}", 400, "invalid_json", None),
    ("not JSON", "{nope", 400, "invalid_json", None),
    ("NaN in args", json.dumps(call_body(args={"x": float("nan")})), 422, "invalid_request", "args"),
    ("Infinity in args", json.dumps(call_body(args={"x": float("inf")})), 422, "invalid_request", "args"),
]


@pytest.mark.parametrize(("case", "raw", "status", "code", "field"), RAW_CALL_CASES, ids=[c[0] for c in RAW_CALL_CASES])
def test_call_refuses_raw_bodies(lambda_context: Any, case: str, raw: str, status: int, code: str, field: str) -> None:
    got, answer = post_call(lambda_context, raw=raw)
    assert (got, answer["error"]["code"]) == (status, code), answer
    if field:
        assert field in fields_of(answer)


def test_out_of_range_args_are_the_tools_invalid_args_not_an_http_error(lambda_context: Any) -> None:
    """The wire does not know a tool's schema: its ranges are checked by the call, answered with HTTP 200."""
    status, answer = post_call(lambda_context, call_body(tool_id="demo.limited", args={"limit": 500}))
    assert status == 200 and answer["ok"] is False
    assert answer["error"]["code"] == "invalid_args" and "args.limit" in answer["error"]["message"]


@pytest.mark.parametrize("kind", ["nan", "surrogate"])
def test_a_result_json_cannot_carry_is_invalid_result_not_a_500(lambda_context: Any, kind: str) -> None:
    status, answer = post_call(lambda_context, call_body(tool_id="demo.unencodable", args={"kind": kind}))
    assert status == 200 and answer["ok"] is False and answer["error"]["code"] == "invalid_result"


def test_a_valid_call_still_succeeds(lambda_context: Any) -> None:
    body = call_body(context={"channel_id": "channel:general", "note": "ok"}, idempotency_key=None)
    status, answer = post_call(lambda_context, body)
    assert status == 200 and answer["ok"] is True and answer["result"]["echo"] == {"q": "hi"}
    assert answer["result"]["context"]["channel_id"] == "channel:general"
    assert "truncated" not in answer and "idempotent_replay" not in answer


# ---------------------------------------------------------------- GET /internal/tools

LIST_CASES = [
    ("NUL in agent_id", {"agent_id": "a%00b", "microdao_id": DAO}, "query.agent_id"),
    ("NUL in microdao_id", {"agent_id": AGENT, "microdao_id": "a%00b"}, "query.microdao_id"),
    ("control character in agent_id", {"agent_id": "a%01b", "microdao_id": DAO}, "query.agent_id"),
    ("C1 control character in microdao_id", {"agent_id": AGENT, "microdao_id": "a%C2%85b"}, "query.microdao_id"),
    ("over-long agent_id", {"agent_id": LONG, "microdao_id": DAO}, "query.agent_id"),
    ("blank microdao_id", {"agent_id": AGENT, "microdao_id": "%20%20"}, "query.microdao_id"),
    ("empty agent_id", {"agent_id": "", "microdao_id": DAO}, "query.agent_id"),
    ("missing agent_id", {"microdao_id": DAO}, "query.agent_id"),
    ("missing microdao_id", {"agent_id": AGENT}, "query.microdao_id"),
    ("unknown format", {"agent_id": AGENT, "microdao_id": DAO, "format": "xml"}, "query.format"),
]


@pytest.mark.parametrize(("case", "query", "field"), LIST_CASES, ids=[c[0] for c in LIST_CASES])
def test_listing_refuses(lambda_context: Any, case: str, query: dict[str, str], field: str) -> None:
    status, _, answer = invoke(list_event(**query), lambda_context)
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_request" and field in fields_of(answer)


@pytest.mark.parametrize("fmt", ["native", "openai", "mcp"])
def test_listing_answers_each_format(lambda_context: Any, fmt: str) -> None:
    event = list_event(agent_id="agent%3Asofia", microdao_id="microdao%3A7", format=fmt)
    status, _, answer = invoke(event, lambda_context)
    assert status == 200 and answer["format"] == fmt and len(answer["tools"]) == 3
    if fmt == "openai":
        assert answer["tool_ids"]["demo__echo"] == "demo.echo"
    if fmt == "mcp":
        assert all("outputSchema" not in t for t in answer["tools"])  # absent, not null, without an object schema


# ---------------------------------------------------------------- POST /mcp

IDENTITY = {"x_agent_id": AGENT, "x_microdao_id": DAO}
PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602


def rpc_call(params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}


def call_params(**more: Any) -> dict[str, Any]:
    return {"name": "demo.echo", "arguments": {"q": "hi"}, **more}


def post_mcp(lambda_context: Any, message: Any = None, raw: str | None = None, **headers: str) -> tuple[int, Any]:
    event = mcp_event(message, **{**IDENTITY, **headers})
    if raw is not None:
        event["body"] = raw
    status, _, answer = invoke(event, lambda_context)
    return status, answer


MCP_ENVELOPE_CASES = [
    # (case, raw body, JSON-RPC code, field) -> HTTP 400, id null
    ("JSON nested 10,000 deep", DEEP, PARSE_ERROR, None),
    (
        "JSON-RPC nested 10,000 deep",
        '{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"a": ' + DEEP + "}}",
        PARSE_ERROR,
        None,
    ),
    ("not JSON", "{nope", PARSE_ERROR, None),
    ("a batch", json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]), INVALID_REQUEST, None),
    ("a bare string", json.dumps("ping"), INVALID_REQUEST, None),
    ("wrong jsonrpc version", json.dumps({"jsonrpc": "1.0", "id": 1, "method": "ping"}), INVALID_REQUEST, "jsonrpc"),
    ("null id", json.dumps({"jsonrpc": "2.0", "id": None, "method": "ping"}), INVALID_REQUEST, "id"),
    ("boolean id", json.dumps({"jsonrpc": "2.0", "id": True, "method": "ping"}), INVALID_REQUEST, "id"),
    ("NUL in id", json.dumps({"jsonrpc": "2.0", "id": NUL, "method": "ping"}), INVALID_REQUEST, "id"),
    ("lone surrogate in id", json.dumps({"jsonrpc": "2.0", "id": SURROGATE, "method": "ping"}), INVALID_REQUEST, "id"),
    ("NUL in method", json.dumps({"jsonrpc": "2.0", "id": 1, "method": NUL}), INVALID_REQUEST, "method"),
    (
        "lone surrogate in method",
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": SURROGATE}),
        INVALID_REQUEST,
        "method",
    ),
    ("number as method", json.dumps({"jsonrpc": "2.0", "id": 1, "method": 10}), INVALID_REQUEST, "method"),
    (
        "missing method (a JSON-RPC response)",
        json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}),
        INVALID_REQUEST,
        "method",
    ),
    (
        "params a string",
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "x"}),
        INVALID_REQUEST,
        "params",
    ),
]


@pytest.mark.parametrize(("case", "raw", "code", "field"), MCP_ENVELOPE_CASES, ids=[c[0] for c in MCP_ENVELOPE_CASES])
def test_mcp_refuses_what_is_not_one_json_rpc_message(
    lambda_context: Any, case: str, raw: str, code: int, field: str | None
) -> None:
    status, answer = post_mcp(lambda_context, raw=raw)
    assert status == 400, answer
    assert answer["id"] is None and answer["error"]["code"] == code
    if field:
        assert field in [f["field"] for f in answer["error"]["data"]["fields"]]


MCP_PARAMS_CASES = [
    # (case, message, JSON-RPC code, field) -> HTTP 200 with a JSON-RPC error, no call made
    *[
        (f"{what} in params.name", rpc_call(call_params(name=value)), INVALID_PARAMS, "params.name")
        for what, value in (
            ("NUL", NUL),
            ("lone surrogate", SURROGATE),
            ("control character", "a\x01b"),
            ("over-long", LONG),
            ("a number", 10),
            ("empty", ""),
        )
    ],
    ("missing params.name", rpc_call({"arguments": {}}), INVALID_PARAMS, "params.name"),
    ("NUL in params.arguments", rpc_call(call_params(arguments={"q": NUL})), INVALID_PARAMS, "params.arguments.q"),
    (
        "lone surrogate in params.arguments",
        rpc_call(call_params(arguments={"q": [SURROGATE]})),
        INVALID_PARAMS,
        "params.arguments.q.0",
    ),
    ("params.arguments a string", rpc_call(call_params(arguments="x")), INVALID_PARAMS, "params.arguments"),
    (
        "params.arguments over the size bound",
        rpc_call(call_params(arguments={"b": "x" * MAX_ARGS_BYTES})),
        INVALID_PARAMS,
        "params.arguments",
    ),
    *[
        (
            f"{what} in params._meta.idempotency_key",
            rpc_call(call_params(_meta={"idempotency_key": value})),
            INVALID_PARAMS,
            "params._meta.idempotency_key",
        )
        for what, value in (
            ("NUL", NUL),
            ("lone surrogate", SURROGATE),
            ("control character", "a\x1fb"),
            ("over-long", LONG),
            ("a number", 10),
        )
    ],
    (
        "NUL in initialize's clientInfo",
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"clientInfo": {"name": NUL}}},
        INVALID_PARAMS,
        "params.clientInfo.name",
    ),
]


@pytest.mark.parametrize(("case", "message", "code", "field"), MCP_PARAMS_CASES, ids=[c[0] for c in MCP_PARAMS_CASES])
def test_mcp_refuses_bad_params_without_calling(
    lambda_context: Any, case: str, message: dict[str, Any], code: int, field: str
) -> None:
    calls_before = sum(_calls.values())
    status, answer = post_mcp(lambda_context, message)
    assert status == 200, answer
    assert answer["id"] == message["id"] and answer["error"]["code"] == code
    assert field in [f["field"] for f in answer["error"]["data"]["fields"]], answer
    assert sum(_calls.values()) == calls_before


MCP_HEADER_CASES = [
    *[
        (f"{what} in X-Agent-Id", {"x_agent_id": value}, "header.x-agent-id")
        for what, value in (
            ("NUL", NUL),
            ("control character", "a\x01b"),
            ("C1 control character", "a\x85b"),
            ("over-long", LONG),
            ("empty", ""),
            ("blank", "  "),
        )
    ],
    ("NUL in X-Microdao-Id", {"x_microdao_id": NUL}, "header.x-microdao-id"),
    ("control character in X-Channel-Id", {"x_channel_id": "a\x7fb"}, "header.x-channel-id"),
    ("over-long X-Channel-Id", {"x_channel_id": LONG}, "header.x-channel-id"),
]


@pytest.mark.parametrize(("case", "headers", "field"), MCP_HEADER_CASES, ids=[c[0] for c in MCP_HEADER_CASES])
@pytest.mark.parametrize("method", ["tools/list", "tools/call"])
def test_mcp_refuses_bad_identity_headers(
    lambda_context: Any, case: str, headers: dict[str, str], field: str, method: str
) -> None:
    calls_before = sum(_calls.values())
    params = call_params() if method == "tools/call" else {}
    message = {"jsonrpc": "2.0", "id": "r-1", "method": method, "params": params}
    status, answer = post_mcp(lambda_context, message, **headers)
    assert status == 200 and answer["id"] == "r-1", answer
    assert answer["error"]["code"] == INVALID_REQUEST
    assert field in [f["field"] for f in answer["error"]["data"]["fields"]]
    assert sum(_calls.values()) == calls_before


def test_mcp_requires_the_identity_headers_for_tools(lambda_context: Any) -> None:
    event = mcp_event({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, x_microdao_id=DAO)
    status, _, answer = invoke(event, lambda_context)
    assert status == 200 and answer["error"]["code"] == INVALID_REQUEST
    assert [f["field"] for f in answer["error"]["data"]["fields"]] == ["header.x-agent-id"]


def test_mcp_reads_identity_headers_as_utf8(lambda_context: Any, serve_with: Any) -> None:
    """A non-ASCII id in a header is the same id as in a body (UTF-8, not Latin-1)."""
    agent = "agent:софія"
    serve_with(make_service(tool("demo.only", allowed_agents=[agent])))
    status, answer = post_mcp(lambda_context, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, x_agent_id=agent)
    assert status == 200 and [t["name"] for t in answer["result"]["tools"]] == ["demo.only"]


def test_mcp_valid_call_still_succeeds(lambda_context: Any) -> None:
    message = rpc_call(call_params(_meta={"idempotency_key": None, "progressToken": 3}))
    status, answer = post_mcp(lambda_context, message, x_channel_id="channel:general")
    assert status == 200 and answer["result"]["isError"] is False
    assert answer["result"]["structuredContent"]["context"]["channel_id"] == "channel:general"


# ---------------------------------------------------------------- the client checks with the same model


@pytest.mark.parametrize(("field", "kwargs"), [("agent_id", {"agent_id": NUL}), ("args.q", {"args": {"q": SURROGATE}})])
def test_the_client_refuses_what_the_service_would_before_sending(field: str, kwargs: dict[str, Any]) -> None:
    from daarion_client import InvalidRequest, ToolcoreClient

    call: dict[str, Any] = {"agent_id": AGENT, "microdao_id": DAO, "args": {"q": "hi"}, **kwargs}
    with ToolcoreClient("http://127.0.0.1:9") as client, pytest.raises(InvalidRequest) as refused:  # nothing listens
        client.call("demo.echo", call.pop("args"), **call)
    assert refused.value.status == 422 and field in [f["field"] for f in refused.value.fields]
