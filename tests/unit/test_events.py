"""The events that cross queues: one schema, strict, with an id to be idempotent on."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from daarion_common.events import IndexRequest, LlmCallEvent, ToolCallEvent, usage_event_adapter
from tests.conftest import load_event


def test_sample_sqs_records_parse_to_their_types():
    records = load_event("sqs_usage_batch.json")["Records"]
    llm = usage_event_adapter.validate_json(records[0]["body"])
    tool = usage_event_adapter.validate_json(records[1]["body"])
    assert isinstance(llm, LlmCallEvent) and llm.total_tokens == 508
    assert isinstance(tool, ToolCallEvent) and tool.tool_id == "projects.list"


def test_incomplete_event_is_rejected():
    records = load_event("sqs_usage_batch.json")["Records"]
    with pytest.raises(ValidationError):
        usage_event_adapter.validate_json(records[2]["body"])


@pytest.mark.parametrize(
    "change",
    [{"type": "mystery"}, {"prompt_tokens": -1}, {"status": "maybe"}, {"unexpected": 1}, {"schema_version": 3}],
)
def test_unknown_or_invalid_fields_are_rejected(change):
    body = json.loads(load_event("sqs_usage_batch.json")["Records"][0]["body"])
    body.update(change)
    with pytest.raises(ValidationError):
        usage_event_adapter.validate_python(body)


def test_round_trip_keeps_every_field():
    event = LlmCallEvent(
        agent_id="sofia",
        microdao_id="dao-42",
        latency_ms=3.5,
        status="error",
        error_code="timeout",
        model="deepseek-r1",
    )
    again = usage_event_adapter.validate_json(event.model_dump_json())
    assert again == event
    assert event.event_id and event.occurred_at.tzinfo is not None


def test_index_request_defaults():
    request = IndexRequest(memory_ids=["a"])
    assert request.type == "index" and request.event_id


def test_the_recorder_accepts_both_schema_versions_during_a_rollout():
    body = json.loads(load_event("sqs_usage_batch.json")["Records"][0]["body"])
    v1 = usage_event_adapter.validate_python({**body, "schema_version": 1})
    assert v1.schema_version == 1 and v1.reservation is None and v1.charge == "actual"
    held = {"tokens": 10, "usd_micros": 5, "counters": [{"pk": "p", "attribute": "tokens", "amount": 10}]}
    v2 = usage_event_adapter.validate_python({**body, "schema_version": 2, "reservation": held, "charge": "reserved"})
    assert v2.reservation.tokens == 10
    with pytest.raises(ValidationError):  # a version 1 event cannot carry version 2 fields
        usage_event_adapter.validate_python({**body, "schema_version": 1, "charge": "reserved"})


def test_a_replayed_tool_call_is_a_replay_not_another_call():
    from daarion_common.usage_ledger import increments

    replay = ToolCallEvent(
        agent_id="a", microdao_id="d", latency_ms=1, status="ok", tool_id="t", replay=True, attempts=0
    )
    assert increments(replay)["tool_replays"] == 1 and "tool_calls" not in increments(replay)
    first = ToolCallEvent(agent_id="a", microdao_id="d", latency_ms=1, status="ok", tool_id="t", attempts=2)
    assert increments(first)["tool_calls"] == 1 and "tool_replays" not in increments(first)


def test_corrections_bring_each_counter_to_the_billed_figures():
    from daarion_common.usage_ledger import corrections

    held = {
        "tokens": 400, "usd_micros": 900,
        "counters": [
            {"pk": "agent#x", "attribute": "tokens", "amount": 300},
            {"pk": "dao#d", "attribute": "usd_micros", "amount": 700},
            {"pk": "dao#d", "attribute": "usd_micros", "amount": 200},  # a fallback's extension
            {"pk": "agent#x", "attribute": "tokens", "amount": 100},
        ],
    }  # fmt: skip
    event = LlmCallEvent(
        agent_id="a", microdao_id="d", latency_ms=1, status="ok", model="m",
        prompt_tokens=50, completion_tokens=20, cost_usd=0.0001, reservation=held,
    )  # fmt: skip
    assert corrections(event) == {("agent#x", "tokens"): 70 - 400, ("dao#d", "usd_micros"): 100 - 900}
    assert corrections(event.model_copy(update={"charge": "reserved"})) == {}  # unknown: the reservation stands
