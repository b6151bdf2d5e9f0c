"""The SQS-triggered handlers with real SQS event batches (the usage recorder: tests/integration/test_usage_*)."""

from __future__ import annotations

from tests.conftest import load_event


def test_memory_indexer_accepts_index_batches_and_schedule(memory_db, lambda_context):
    from memory_indexer.app import handler

    # ids that name no memory: nothing to embed, nothing failed
    assert handler(load_event("sqs_index_batch.json"), lambda_context) == {"batchItemFailures": []}
    swept = handler(load_event("scheduler_sweep.json"), lambda_context)
    assert {k: swept[k] for k in ("task", "expired", "embedded")} == {"task": "sweep", "expired": 0, "embedded": 0}
    assert swept["consolidated"]["summaries"] == 0


def test_memory_indexer_reports_a_bad_index_request(memory_db, lambda_context):
    from memory_indexer.app import handler

    event = load_event("sqs_index_batch.json")
    event["Records"][0]["body"] = '{"type": "index", "memory_ids": "not-a-list"}'
    result = handler(event, lambda_context)
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
