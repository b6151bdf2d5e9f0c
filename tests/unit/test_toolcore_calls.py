"""POST /internal/tools/call and GET /internal/tools through the real handler with API Gateway v2 events:
permissions, schema validation both ways, every error code, timeouts and retries against real loopback
servers, truncation, secrets, the three listing formats."""

from __future__ import annotations

import json
import logging

import pytest

from tests.fixtures.toolcore import (
    TEST_PACKAGE,
    invoke,
    list_event,
    make_service,
    tool,
)
from toolcore.service import ERROR_CODES

AGENTS = ("sofia", "helion")
DAOS = ("dao-1", "dao-2")
MATRIX_TOOLS = {
    # tool id: (allowed_agents, allowed_microdaos)
    "m.open": (None, None),
    "m.sofia": (["sofia"], None),
    "m.dao1": (None, ["dao-1"]),
    "m.sofia-dao1": (["sofia"], ["dao-1"]),
    "m.nobody": ([], None),
    "m.no-dao": (None, []),
}


def expected_allowed(tool_id: str, agent: str, dao: str) -> bool:
    agents, daos = MATRIX_TOOLS[tool_id]
    return (agents is None or agent in agents) and (daos is None or dao in daos)


@pytest.fixture
def matrix_service(serve_with):
    tools = [tool(t, allowed_agents=a, allowed_microdaos=d) for t, (a, d) in MATRIX_TOOLS.items()]
    return serve_with(make_service(*tools))


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("dao", DAOS)
def test_permission_matrix_list_and_call_agree(matrix_service, call_tool, lambda_context, agent, dao):
    status, _, listed = invoke(list_event(agent_id=agent, microdao_id=dao), lambda_context)
    assert status == 200
    visible = {t["id"] for t in listed["tools"]}
    assert visible == {t for t in MATRIX_TOOLS if expected_allowed(t, agent, dao)}
    for tool_id in MATRIX_TOOLS:
        out = call_tool(tool_id, {"x": 1}, agent_id=agent, microdao_id=dao)
        if expected_allowed(tool_id, agent, dao):
            assert out["ok"] is True and out["error"] is None, (tool_id, out)
            assert out["result"]["echo"] == {"x": 1}
        else:  # checked on the call itself, not only hidden from the list
            assert out["ok"] is False and out["error"]["code"] == "permission_denied", (tool_id, out)
            assert out["result"] is None


def test_tenant_argument_must_be_the_callers_own_microdao(serve_with, call_tool):
    schema = {"type": "object", "properties": {"microdao_id": {"type": "string"}}, "required": ["microdao_id"]}
    serve_with(make_service(tool("t.tenant", input_schema=schema, tenant_arg="microdao_id")))
    assert call_tool("t.tenant", {"microdao_id": "dao-1"}, microdao_id="dao-1")["ok"] is True
    out = call_tool("t.tenant", {"microdao_id": "dao-2"}, microdao_id="dao-1")
    assert out["error"]["code"] == "permission_denied"
    assert "args.microdao_id" in out["error"]["message"]


def test_target_receives_verified_identity_not_the_callers_claims(serve_with, call_tool):
    serve_with(make_service(tool("t.echo")))
    out = call_tool("t.echo", {}, agent_id="sofia", context={"agent_id": "root", "channel_id": "c-9"})
    context = out["result"]["context"]
    assert context["agent_id"] == "sofia" and context["microdao_id"] == "dao-1"
    assert context["channel_id"] == "c-9" and context["tool_id"] == "t.echo"


# ---------------------------------------------------------------- schema validation, both ways

ARGS_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}},
        },
    },
    "required": ["title"],
    "additionalProperties": False,
}
RESULT_SCHEMA = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({}, "args: 'title' is a required property"),
        ({"title": ""}, "args.title:"),
        ({"title": "t", "items": [{"qty": 1}, {"qty": 0}]}, "args.items[1].qty:"),
        ({"title": "t", "extra": 1}, "args: Additional properties"),
    ],
)
def test_invalid_args_name_the_path_and_the_tool_is_not_run(serve_with, call_tool, args, path):
    from tests.fixtures import toolcore as fixtures

    serve_with(make_service(tool("t.strict", input_schema=ARGS_SCHEMA)))
    before = fixtures._calls["echo"]
    out = call_tool("t.strict", args)
    assert out["error"]["code"] == "invalid_args"
    assert out["error"]["message"].startswith(path), out["error"]["message"]
    assert fixtures._calls["echo"] == before


def test_valid_result_passes_and_invalid_result_is_invalid_result_naming_the_path(serve_with, call_tool):
    serve_with(make_service(tool("t.ret", target=f"{TEST_PACKAGE}:returns", output_schema=RESULT_SCHEMA)))
    assert call_tool("t.ret", {"value": {"id": "a"}}) | {"latency_ms": 0} == {
        "ok": True, "result": {"id": "a"}, "error": None, "tool_id": "t.ret", "latency_ms": 0,
    }  # fmt: skip
    out = call_tool("t.ret", {"value": {"id": 7}})
    assert out["ok"] is False and out["error"]["code"] == "invalid_result"
    assert "result.id" in out["error"]["message"] and out["result"] is None


def test_a_failed_call_reports_its_own_error_not_an_output_schema_error(serve_with, call_tool, tool_target):
    serve_with(
        make_service(
            tool("t.down", "http", tool_target.url("/fail"), output_schema=RESULT_SCHEMA),
            allow=[tool_target.host_port],
        )
    )
    out = call_tool("t.down")
    assert out["error"]["code"] == "upstream_error" and "503" in out["error"]["message"]


# ---------------------------------------------------------------- every error code


@pytest.fixture
def everything(serve_with, tool_target):
    return serve_with(
        make_service(
            tool("e.ok"),
            tool("e.off", enabled=False),
            tool("e.private", allowed_agents=["someone-else"]),
            tool("e.args", input_schema=ARGS_SCHEMA),
            tool("e.slow", target=f"{TEST_PACKAGE}:slow_sync", timeout=0.2),
            tool("e.down", "http", tool_target.url("/fail")),
            tool("e.bad", target=f"{TEST_PACKAGE}:returns", output_schema=RESULT_SCHEMA),
            tool("e.bug", target=f"{TEST_PACKAGE}:boom"),
            allow=[tool_target.host_port],
        )
    )


@pytest.mark.parametrize(
    ("tool_id", "args", "code"),
    [
        ("e.private", {}, "permission_denied"),
        ("e.missing", {}, "tool_not_found"),
        ("e.off", {}, "tool_disabled"),
        ("e.args", {"title": 5}, "invalid_args"),
        ("e.slow", {"seconds": 1}, "timeout"),
        ("e.down", {}, "upstream_error"),
        ("e.bad", {"value": []}, "invalid_result"),
        ("e.bug", {}, "internal"),
    ],
)
def test_each_error_code(everything, call_tool, tool_id, args, code):
    out = call_tool(tool_id, args)
    assert out["ok"] is False and out["result"] is None
    assert out["error"]["code"] == code and out["error"]["message"]
    assert out["tool_id"] == tool_id and out["latency_ms"] >= 0


def test_the_error_codes_above_are_the_whole_list():
    assert set(ERROR_CODES) == {
        "permission_denied", "tool_not_found", "tool_disabled", "invalid_args",
        "timeout", "upstream_error", "invalid_result", "internal",
    }  # fmt: skip


def test_internal_error_does_not_leak_the_exception(everything, call_tool):
    out = call_tool("e.bug")
    assert "a bug in a tool" not in json.dumps(out)


def test_a_builtin_tools_own_error_is_an_upstream_error_with_its_message(serve_with, call_tool):
    serve_with(make_service(tool("t.ro", target=f"{TEST_PACKAGE}:tool_error")))
    out = call_tool("t.ro")
    assert out["error"] == {"code": "upstream_error", "message": "the project archive is read-only"}


def test_non_json_answer_is_invalid_result(serve_with, call_tool, tool_target):
    serve_with(make_service(tool("t.html", "http", tool_target.url("/notjson")), allow=[tool_target.host_port]))
    assert call_tool("t.html")["error"]["code"] == "invalid_result"


# ---------------------------------------------------------------- timeouts and retries (real loopback servers)

IDEMPOTENT = {"read_only": True, "destructive": False, "idempotent": True}


def test_slow_target_times_out_once_when_not_idempotent(serve_with, call_tool, tool_target):
    serve_with(make_service(tool("t.slow", "http", tool_target.url("/slow?s=1.5"), timeout=0.3),
                            allow=[tool_target.host_port]))  # fmt: skip
    out = call_tool("t.slow")
    assert out["error"]["code"] == "timeout"
    assert tool_target.hits["/slow"] == 1


def test_slow_target_is_retried_when_idempotent(serve_with, call_tool, tool_target):
    serve_with(make_service(tool("t.slow", "http", tool_target.url("/slow?s=1.5"), timeout=0.3, retries=2,
                                 hints=IDEMPOTENT), allow=[tool_target.host_port]))  # fmt: skip
    out = call_tool("t.slow")
    assert out["error"]["code"] == "timeout"
    assert tool_target.hits["/slow"] == 3


def test_failing_target_is_retried_only_when_idempotent(serve_with, call_tool, tool_target):
    serve_with(
        make_service(
            tool("t.retry", "http", tool_target.url("/fail"), retries=2, hints=IDEMPOTENT),
            tool("t.once", "http", tool_target.url("/fail"), hints={"idempotent": False}),
            allow=[tool_target.host_port],
        )
    )
    assert call_tool("t.retry")["error"]["code"] == "upstream_error"
    assert tool_target.hits["/fail"] == 3
    assert call_tool("t.once")["error"]["code"] == "upstream_error"
    assert tool_target.hits["/fail"] == 4


def test_retry_recovers_from_a_transient_failure(serve_with, call_tool, tool_target):
    serve_with(make_service(tool("t.flaky", "http", tool_target.url("/flaky?n=1"), retries=1, hints=IDEMPOTENT),
                            allow=[tool_target.host_port]))  # fmt: skip
    out = call_tool("t.flaky")
    assert out["ok"] is True and out["result"] == {"ok": True}
    assert tool_target.hits["/flaky"] == 2


def test_unreachable_target_is_upstream_error(serve_with, call_tool):
    from devstack.stack import free_port

    port = free_port()  # nothing listens there
    serve_with(make_service(tool("t.gone", "http", f"http://127.0.0.1:{port}/x"), allow=[f"127.0.0.1:{port}"]))
    out = call_tool("t.gone")
    assert out["error"]["code"] == "upstream_error" and "could not be reached" in out["error"]["message"]


@pytest.mark.parametrize("function", ["slow_sync", "slow_async"])
def test_python_tools_time_out_sync_and_async(serve_with, call_tool, function):
    serve_with(make_service(tool("t.py", target=f"{TEST_PACKAGE}:{function}", timeout=0.2)))
    assert call_tool("t.py", {"seconds": 1})["error"]["code"] == "timeout"
    assert call_tool("t.py", {"seconds": 0})["ok"] is True


def test_async_python_tool_runs(serve_with, call_tool):
    serve_with(make_service(tool("t.async", target=f"{TEST_PACKAGE}:async_echo")))
    assert call_tool("t.async", {"a": 1})["result"] == {"echo": {"a": 1}}


# ---------------------------------------------------------------- result size cap


def test_large_http_result_is_truncated_with_a_flag(serve_with, call_tool, tool_target):
    serve_with(
        make_service(
            tool("t.big", "http", tool_target.url("/big?bytes=100000"), max_result_bytes=1024,
                 output_schema={"type": "object"}),
            tool("t.small", "http", tool_target.url("/big?bytes=100"), max_result_bytes=1024),
            allow=[tool_target.host_port],
        )
    )  # fmt: skip
    out = call_tool("t.big")
    assert out["ok"] is True and out["truncated"] is True
    assert isinstance(out["result"], str) and len(out["result"].encode()) <= 1024
    assert out["result"].startswith('"xxxx')
    small = call_tool("t.small")
    assert small["result"] == "x" * 100 and "truncated" not in small


def test_large_python_result_is_truncated_with_a_flag(serve_with, call_tool):
    serve_with(make_service(tool("t.big", target=f"{TEST_PACKAGE}:big", max_result_bytes=512)))
    out = call_tool("t.big", {"bytes": 5000})
    assert out["truncated"] is True and len(out["result"].encode()) <= 512
    assert call_tool("t.big", {"bytes": 10})["result"] == {"blob": "y" * 10}


# ---------------------------------------------------------------- secrets


def test_secret_is_sent_as_a_header_and_never_shown_or_logged(serve_with, call_tool, tool_target, monkeypatch, caplog):
    monkeypatch.setenv("TOOL_SECRET_API", "s3cr3t-value-123")
    secrets = {"api": {"header": "Authorization", "prefix": "Bearer "}}
    serve_with(
        make_service(
            tool("t.leak", "http", tool_target.url("/leak"), secrets=["api"]),
            secrets=secrets,
            allow=[tool_target.host_port],
        )
    )
    with caplog.at_level(logging.DEBUG):
        out = call_tool("t.leak")
    assert tool_target.requests[-1]["headers"]["Authorization"] == "Bearer s3cr3t-value-123"
    assert out["ok"] is True and "s3cr3t-value-123" not in json.dumps(out)
    assert out["result"]["saw"] == "Bearer [redacted]"
    assert "s3cr3t-value-123" not in caplog.text


def test_missing_secret_fails_closed_without_calling(serve_with, call_tool, tool_target):
    serve_with(
        make_service(
            tool("t.sec", "http", tool_target.url("/echo"), secrets=["api"]),
            secrets={"api": {"header": "X-Api-Key"}},
            allow=[tool_target.host_port],
        )
    )
    out = call_tool("t.sec")
    assert out["error"]["code"] == "internal" and "credentials" in out["error"]["message"]
    assert tool_target.hits["/echo"] == 0


def test_environment_secrets_are_refused_outside_local(serve_with, call_tool, tool_target, monkeypatch):
    from daarion_common.settings import get_settings

    monkeypatch.setenv("TOOL_SECRET_API", "from-env")
    monkeypatch.setenv("APP_ENV", "aws")
    monkeypatch.setenv("INTERNAL_SECRET", "dev-secret-token")
    get_settings.cache_clear()
    serve_with(make_service(tool("t.sec", "http", tool_target.url("/echo"), secrets=["api"]),
                            secrets={"api": {"header": "X-Api-Key"}}, allow=[tool_target.host_port]))  # fmt: skip
    assert call_tool("t.sec")["error"]["code"] == "internal"
    assert tool_target.hits["/echo"] == 0


# ---------------------------------------------------------------- listing formats


@pytest.fixture
def listed(serve_with, lambda_context):
    from toolcore.registry import DEFAULT_CONFIG, load_registry
    from toolcore.service import ToolService

    env = {"PROJECTS_API_URL": "https://projects.example.org", "FOLLOWUPS_API_URL": "https://f.example.org"}
    serve_with(ToolService(load_registry(DEFAULT_CONFIG, environ=env)))

    def get(fmt: str) -> dict:
        status, _, body = invoke(
            list_event(agent_id="agent:sofia", microdao_id="microdao:7", format=fmt), lambda_context
        )
        assert status == 200
        return body

    return get


def test_native_format_never_shows_targets_or_secrets(listed):
    body = listed("native")
    assert {t["id"] for t in body["tools"]} >= {"projects.list", "task.create", "followup.create"}
    text = json.dumps(body)
    assert "example.org" not in text and "projects_api" not in text and "executor" not in text


def test_openai_format_is_valid_for_tools_and_strict_only_where_the_schema_allows(listed):
    body = listed("openai")
    import re

    for entry in body["tools"]:
        assert entry["type"] == "function" and set(entry) == {"type", "function"}
        fn = entry["function"]
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", fn["name"])
        assert fn["parameters"]["type"] == "object" and isinstance(fn["strict"], bool)
    by_name = {e["function"]["name"]: e["function"] for e in body["tools"]}
    assert body["tool_ids"]["projects__list"] == "projects.list"
    assert by_name["projects__list"]["strict"] is False  # optional properties, minLength: not strict-compatible
    assert by_name["time__now"]["strict"] is True  # closed object, every property required


def test_openai_name_is_accepted_by_the_call_route(serve_with, call_tool):
    serve_with(make_service(tool("t.dotted")))
    out = call_tool("t__dotted", {"a": 1})
    assert out["ok"] is True and out["tool_id"] == "t.dotted"


def test_mcp_format_carries_annotations(listed):
    body = listed("mcp")
    by_name = {t["name"]: t for t in body["tools"]}
    assert by_name["projects.list"]["annotations"]["readOnlyHint"] is True
    assert by_name["task.create"]["annotations"]["idempotentHint"] is False
    assert by_name["projects.list"]["inputSchema"]["type"] == "object"
    assert by_name["projects.list"]["outputSchema"]["type"] == "object"


def test_list_requires_agent_and_microdao(listed, lambda_context):
    status, _, body = invoke(list_event(agent_id="sofia"), lambda_context)
    assert status == 422 and "microdao_id" in body["error"]["message"]


def test_disabled_tools_are_not_listed(serve_with, lambda_context):
    serve_with(make_service(tool("t.on"), tool("t.off", enabled=False)))
    _, _, body = invoke(list_event(agent_id="sofia", microdao_id="dao-1"), lambda_context)
    assert [t["id"] for t in body["tools"]] == ["t.on"]


def test_call_reports_its_timings_in_server_timing(serve_with, lambda_context):
    from tests.fixtures.toolcore import call_event

    serve_with(make_service(tool("t.echo")))
    body = {"tool_id": "t.echo", "agent_id": "sofia", "microdao_id": "dao-1", "args": {}}
    status, headers, _ = invoke(call_event(body), lambda_context)
    assert status == 200
    assert "upstream;dur=" in headers["server-timing"] and "aws;dur=" in headers["server-timing"]
