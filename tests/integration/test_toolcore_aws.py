"""Toolcore against moto's server over HTTP: idempotency in the template's DynamoDB table, and every call's
audit event read back from the usage queue."""

from __future__ import annotations

import json
import uuid

import pytest

from daarion_common.events import ToolCallEvent, usage_event_adapter
from tests.fixtures.toolcore import make_service, tool

NOT_IDEMPOTENT = {"read_only": False, "destructive": False, "idempotent": False}


@pytest.fixture
def toolcore_aws(aws):
    """moto's server; each test's service builds its own idempotency store (no runner outlives it)."""
    return aws


@pytest.fixture
def counting(serve_with, tool_target, toolcore_aws):
    serve_with(
        make_service(
            tool("t.create", "http", tool_target.url("/count"), hints=NOT_IDEMPOTENT),
            tool("t.read", "http", tool_target.url("/count?r"), hints={"idempotent": True}),
            tool("t.down", "http", tool_target.url("/fail"), hints=NOT_IDEMPOTENT),
            allow=[tool_target.host_port],
        )
    )
    return tool_target


def idempotency_items(aws) -> list[dict]:
    table = aws.ref("IdempotencyTable")
    return aws.clients["dynamodb"].scan(TableName=table)["Items"]


def test_same_key_returns_the_first_result_without_executing_again(counting, call_tool, toolcore_aws):
    first = call_tool("t.create", {"title": "a"}, idempotency_key="key-1")
    second = call_tool("t.create", {"title": "a"}, idempotency_key="key-1")
    assert first["ok"] and first["result"] == {"n": 1}
    assert second["result"] == {"n": 1} and second["idempotent_replay"] is True
    assert counting.hits["/count"] == 1
    items = idempotency_items(toolcore_aws)
    assert any(i["status"]["S"] == "COMPLETED" and "expiration" in i for i in items)
    # a new key runs again
    assert call_tool("t.create", {"title": "a"}, idempotency_key="key-2")["result"] == {"n": 2}
    assert counting.hits["/count"] == 2


def test_key_is_scoped_to_agent_and_microdao(counting, call_tool):
    call_tool("t.create", {}, idempotency_key="shared", agent_id="sofia", microdao_id="dao-1")
    other_dao = call_tool("t.create", {}, idempotency_key="shared", agent_id="sofia", microdao_id="dao-2")
    other_agent = call_tool("t.create", {}, idempotency_key="shared", agent_id="helion", microdao_id="dao-1")
    assert "idempotent_replay" not in other_dao and "idempotent_replay" not in other_agent
    assert counting.hits["/count"] == 3  # never another tenant's stored result


def test_same_key_with_different_args_is_refused(counting, call_tool):
    call_tool("t.create", {"title": "a"}, idempotency_key="key-3")
    out = call_tool("t.create", {"title": "b"}, idempotency_key="key-3")
    assert out["error"]["code"] == "invalid_args" and "idempotency_key" in out["error"]["message"]
    assert counting.hits["/count"] == 1


def test_a_failed_call_is_not_stored_so_it_can_be_retried(counting, call_tool):
    assert call_tool("t.down", {}, idempotency_key="key-4")["error"]["code"] == "upstream_error"
    assert call_tool("t.down", {}, idempotency_key="key-4")["error"]["code"] == "upstream_error"
    assert counting.hits["/fail"] == 2


def test_idempotent_tools_do_not_touch_the_store(counting, call_tool, toolcore_aws):
    before = len(idempotency_items(toolcore_aws))
    call_tool("t.read", {}, idempotency_key="key-5")
    call_tool("t.read", {}, idempotency_key="key-5")
    assert counting.hits["/count"] == 2  # safe to run twice: it is idempotent
    assert len(idempotency_items(toolcore_aws)) == before


def test_non_idempotent_call_with_a_key_fails_closed_without_a_store(serve_with, tool_target, call_tool, monkeypatch):
    from daarion_common.settings import get_settings

    monkeypatch.delenv("IDEMPOTENCY_TABLE", raising=False)
    get_settings.cache_clear()
    serve_with(make_service(tool("t.create", "http", tool_target.url("/count"), hints=NOT_IDEMPOTENT),
                            allow=[tool_target.host_port]))  # fmt: skip
    out = call_tool("t.create", {}, idempotency_key="k")
    assert out["error"]["code"] == "internal" and tool_target.hits["/count"] == 0


def test_unreachable_store_fails_closed_without_executing(counting, call_tool, monkeypatch):
    from daarion_common import aws as aws_clients
    from daarion_common.settings import get_settings

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    aws_clients.reset_clients()
    out = call_tool("t.create", {}, idempotency_key="key-6")
    assert out["error"]["code"] == "internal" and "not called" in out["error"]["message"]
    assert counting.hits["/count"] == 0


# ---------------------------------------------------------------- audit


def drain(aws, channel_id: str, expected: int) -> list[ToolCallEvent]:
    """This test's events (by its unique channel), read from the queue; other tests' events are skipped."""
    sqs = aws.clients["sqs"]
    events = []
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=aws.ref("UsageQueue"), MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            event = usage_event_adapter.validate_json(message["Body"])
            sqs.delete_message(QueueUrl=aws.ref("UsageQueue"), ReceiptHandle=message["ReceiptHandle"])
            if event.channel_id == channel_id:
                events.append(event)
        if len(events) >= expected:
            break
    return events


def test_every_call_emits_an_audit_event_read_back_from_the_queue(serve_with, tool_target, call_tool, toolcore_aws):
    serve_with(
        make_service(
            tool("a.ok", "http", tool_target.url("/echo")),
            tool("a.private", allowed_agents=["nobody"]),
            tool("a.strict", input_schema={"type": "object", "required": ["x"]}),
            allow=[tool_target.host_port],
        )
    )
    calls = [
        ("a.ok", {}, "ok", None),
        ("a.private", {}, "error", "permission_denied"),
        ("a.missing", {}, "error", "tool_not_found"),
        ("a.strict", {}, "error", "invalid_args"),
    ]
    channel = f"chan-{uuid.uuid4().hex}"
    bodies = [call_tool(t, a, context={"channel_id": channel}) for t, a, _, _ in calls]
    events = drain(toolcore_aws, channel, len(calls))
    assert len(events) == len(calls)
    seen = {(e.tool_id, e.status, e.error_code) for e in events}
    assert seen == {(t, s, c) for t, _, s, c in calls}
    for event in events:
        assert isinstance(event, ToolCallEvent) and event.type == "tool_call"
        assert event.agent_id == "sofia" and event.microdao_id == "dao-1" and event.channel_id == channel
        assert event.latency_ms >= 0
    assert all(json.dumps(b) for b in bodies)
    # the target's answer and the args are not in the audit trail
    assert "echo" not in json.dumps([e.model_dump(mode="json") for e in events])


def test_a_replay_is_audited_as_a_replay_read_back_from_the_queue(counting, call_tool, toolcore_aws):
    channel = f"chan-{uuid.uuid4().hex}"
    key = f"key-{uuid.uuid4().hex}"
    first = call_tool("t.create", {}, idempotency_key=key, context={"channel_id": channel})
    second = call_tool("t.create", {}, idempotency_key=key, context={"channel_id": channel})
    assert second["idempotent_replay"] is True and second["result"] == first["result"]
    events = drain(toolcore_aws, channel, 2)
    assert sorted((e.replay, e.attempts) for e in events) == [(False, 1), (True, 0)]  # type: ignore[attr-defined]
    assert counting.hits["/count"] == 1
