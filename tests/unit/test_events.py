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
