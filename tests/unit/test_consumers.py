"""The SQS-triggered handlers with real SQS event batches."""

from __future__ import annotations

from tests.conftest import load_event


def test_usage_recorder_reports_exactly_the_malformed_record(lambda_context):
    from usage_recorder.app import handler

    event = load_event("sqs_usage_batch.json")
    result = handler(event, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["messageId"]}]}


def test_usage_recorder_whole_valid_batch_succeeds(lambda_context):
    from usage_recorder.app import handler

    event = load_event("sqs_usage_batch.json")
    event["Records"] = event["Records"][:2]
    assert handler(event, lambda_context) == {"batchItemFailures": []}


def test_usage_recorder_says_recording_is_not_built(lambda_context, caplog):
    from usage_recorder.app import handler

    event = load_event("sqs_usage_batch.json")
    event["Records"] = event["Records"][:1]
    with caplog.at_level("INFO"):
        handler(event, lambda_context)
    assert any("not built yet" in r.getMessage() for r in caplog.records)


def test_memory_indexer_accepts_index_batches_and_schedule(memory_db, lambda_context):
    from memory_indexer.app import handler

    # ids that name no memory: nothing to embed, nothing failed
    assert handler(load_event("sqs_index_batch.json"), lambda_context) == {"batchItemFailures": []}
    assert handler(load_event("scheduler_sweep.json"), lambda_context) == {"task": "sweep", "expired": 0, "embedded": 0}


def test_memory_indexer_reports_a_bad_index_request(memory_db, lambda_context):
    from memory_indexer.app import handler

    event = load_event("sqs_index_batch.json")
    event["Records"][0]["body"] = '{"type": "index", "memory_ids": "not-a-list"}'
    result = handler(event, lambda_context)
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
