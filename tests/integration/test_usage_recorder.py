"""The usage recorder against moto's server over HTTP, driven with real SQS event batches."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from daarion_common.usage_ledger import query, tenant
from tests.fixtures.usage import drain, llm_event, tool_event
from usage_recorder.app import handler


def _ids() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"agent-{suffix}", f"dao-{suffix}"


def _send(aws, bodies: list[str]) -> None:
    sqs = aws.clients["sqs"]
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=aws.ref("UsageQueue"),
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])],
        )


def _drain(aws):
    usage = aws.resolver.physical["UsageQueue"]
    return drain(aws.clients["sqs"], usage["QueueUrl"], usage["Arn"], handler)


def _report(aws, **kwargs):
    return query(
        aws.clients["dynamodb"],
        aws.ref("UsageTable"),
        date_from=date(2026, 11, 1),
        date_to=date(2026, 11, 30),
        **kwargs,
    ).as_dict()


def test_every_event_delivered_twice_counts_once(aws):
    aws.purge_queues()
    agent, dao = _ids()
    rng = random.Random(7)
    events = []
    for i in range(30):
        day = datetime(2026, 11, 18 + i % 3, 9, tzinfo=UTC)
        if i % 5 == 4:
            events.append(tool_event(agent, dao, occurred_at=day, status="error" if i % 10 == 9 else "ok"))
        else:
            prompt, completion = rng.randint(10, 500), rng.randint(1, 200)
            events.append(
                llm_event(
                    agent, dao, occurred_at=day, prompt_tokens=prompt, completion_tokens=completion,
                    total_tokens=prompt + completion, cost_usd=round(prompt * 4e-7 + completion * 1.6e-6, 9),
                    status="error" if i % 7 == 0 else "ok", model="deepseek-r1" if i % 2 else "gpt-4.1-mini",
                )
            )  # fmt: skip
    bodies = [e.model_dump_json() for e in events]
    _send(aws, bodies + bodies[::-1])  # every event twice, in a different order
    delivery = _drain(aws)
    assert delivery.records == 60 and delivery.failures == []

    llm = [e for e in events if e.type == "llm_call"]
    tools = [e for e in events if e.type == "tool_call"]
    totals = _report(aws, group_by=["day"], microdao_id=dao)["totals"]
    assert totals["requests"] == len(llm)
    assert totals["errors"] == sum(e.status == "error" for e in llm)
    assert totals["prompt_tokens"] == sum(e.prompt_tokens for e in llm)
    assert totals["completion_tokens"] == sum(e.completion_tokens for e in llm)
    assert Decimal(str(totals["cost_usd"])) == round(sum(Decimal(str(e.cost_usd)) for e in llm), 8)
    assert totals["tool_calls"] == len(tools) and totals["tool_errors"] == sum(e.status == "error" for e in tools)
    # the same numbers through the agent's partition and the per-model/day partition
    assert _report(aws, group_by=["day"], agent_id=agent, microdao_id=dao)["totals"] == totals
    by_model = {
        s["key"]["model"]: s["requests"]
        for s in _report(aws, group_by=["model"], agent_id=agent, microdao_id=dao)["series"]
    }
    assert by_model == {
        "gpt-4.1-mini": sum(e.model == "gpt-4.1-mini" for e in llm),
        "deepseek-r1": sum(e.model == "deepseek-r1" for e in llm),
        "tool:projects.list": 0,
    }
    by_day = {
        s["key"]["day"]: s["requests"] + s["tool_calls"]
        for s in _report(aws, group_by=["day"], microdao_id=dao)["series"]
    }
    assert by_day == {"2026-11-18": 10, "2026-11-19": 10, "2026-11-20": 10}


def test_a_malformed_record_fails_alone_and_reaches_the_dlq(aws, lambda_context):
    aws.purge_queues()
    agent, dao = _ids()
    good = [llm_event(agent, dao), tool_event(agent, dao)]
    _send(aws, [good[0].model_dump_json(), '{"type": "llm_call", "agent_id": "half"}', good[1].model_dump_json()])
    usage = aws.resolver.physical["UsageQueue"]
    sqs = aws.clients["sqs"]
    first = sqs.receive_message(QueueUrl=usage["QueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert len(first) == 3
    from devstack.pollers import sqs_record

    result = handler({"Records": [sqs_record(m, usage["Arn"]) for m in first]}, lambda_context)
    malformed = next(m["MessageId"] for m in first if "half" in m["Body"])
    assert result == {"batchItemFailures": [{"itemIdentifier": malformed}]}
    assert _report(aws, group_by=["day"], microdao_id=dao)["totals"]["requests"] == 1
    assert _report(aws, group_by=["day"], microdao_id=dao)["totals"]["tool_calls"] == 1
    for m in first:  # what a poller does with that response
        if m["MessageId"] == malformed:
            sqs.change_message_visibility(
                QueueUrl=usage["QueueUrl"], ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=usage["QueueUrl"], ReceiptHandle=m["ReceiptHandle"])

    delivery = _drain(aws)  # redelivered until the redrive policy moves it
    attrs = sqs.get_queue_attributes(QueueUrl=usage["QueueUrl"], AttributeNames=["RedrivePolicy"])["Attributes"]
    max_receives = int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"])
    assert delivery.failures == [malformed] * (max_receives - 1)
    dead = sqs.receive_message(QueueUrl=aws.ref("UsageDeadLetterQueue"), MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [m["MessageId"] for m in dead["Messages"]] == [malformed]
    assert _report(aws, group_by=["day"], microdao_id=dao)["totals"]["requests"] == 1  # still counted once


def test_raw_events_expire_by_ttl_and_aggregates_do_not(aws, monkeypatch):
    from daarion_common.settings import get_settings

    monkeypatch.setenv("USAGE_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    aws.purge_queues()
    agent, dao = _ids()
    event = llm_event(agent, dao)
    _send(aws, [event.model_dump_json()])
    _drain(aws)
    ddb, table = aws.clients["dynamodb"], aws.ref("UsageTable")
    raw = ddb.get_item(TableName=table, Key={"pk": {"S": f"EVENT#{event.event_id}"}, "sk": {"S": "EVENT"}})["Item"]
    assert int(raw["expires_at"]["N"]) == int((event.occurred_at + timedelta(days=30)).timestamp())
    aggregate = ddb.get_item(
        TableName=table,
        Key={"pk": {"S": f"AGENT#{tenant(dao, agent)}"}, "sk": {"S": "DAY#2026-11-20#LLM#gpt-4.1-mini"}},
    )
    assert "expires_at" not in aggregate["Item"] and aggregate["Item"]["requests"]["N"] == "1"


def test_a_dynamodb_failure_fails_the_records_and_writes_nothing(aws, monkeypatch, lambda_context):
    from daarion_common.settings import get_settings
    from tests.conftest import load_event

    monkeypatch.setenv("USAGE_TABLE", "no-such-table")
    get_settings.cache_clear()
    event = load_event("sqs_usage_batch.json")
    event["Records"] = event["Records"][:2]
    result = handler(event, lambda_context)
    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == [r["messageId"] for r in event["Records"]]


def test_sample_batch_from_tests_events(aws, lambda_context):
    from tests.conftest import load_event

    event = load_event("sqs_usage_batch.json")
    for record in event["Records"][:2]:  # fresh ids so the sample can run on a shared table
        body = json.loads(record["body"])
        body["event_id"] = str(uuid.uuid4())
        record["body"] = json.dumps(body)
    result = handler(event, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["messageId"]}]}


@pytest.mark.parametrize("group_by", [["agent"], ["agent", "day"]])
def test_grouping_by_agent_without_a_scope_is_refused(aws, group_by):
    with pytest.raises(ValueError, match="needs agent_id or microdao_id"):
        _report(aws, group_by=group_by)


def test_injected_transaction_conflicts_every_event_counted_once_none_in_the_dlq(aws, monkeypatch):
    """moto never cancels a transaction for a conflict; DynamoDB does when two transactions write the same
    aggregate. A botocore ``before-call`` hook on the recorder's own client answers the first K
    TransactWriteItems with DynamoDB's TransactionCanceledException [TransactionConflict] (the write never
    reaches moto, as a cancelled transaction writes nothing). Real SQS batches go through the recorder:
    conflicts are retried in place, a record that exhausts its retries is redelivered, and every event is
    counted exactly once with nothing in the DLQ."""
    from botocore.awsrequest import AWSResponse

    from daarion_common import usage_ledger
    from daarion_common.aws import client

    aws.purge_queues()
    dao = f"dao-{uuid.uuid4().hex[:8]}"
    agents = [f"agent-{uuid.uuid4().hex[:6]}" for _ in range(3)]  # few agents: shared aggregate items
    events = [
        llm_event(agents[i % 3], dao, prompt_tokens=10 + i, completion_tokens=i, total_tokens=10 + 2 * i)
        if i % 4
        else tool_event(agents[i % 3], dao, replay=i % 8 == 0)
        for i in range(40)
    ]
    K = 20  # more than CONFLICT_RETRIES in a row: the first records exhaust their retries and are redelivered
    assert usage_ledger.CONFLICT_RETRIES < K
    calls = {"transactions": 0, "conflicts": 0}

    def conflict(**kwargs):
        calls["transactions"] += 1
        if calls["conflicts"] >= K:
            return None  # let the call through to moto
        calls["conflicts"] += 1
        reasons = [{"Code": "None"}, {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
        parsed = {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                "[None, TransactionConflict]",
            },
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), parsed

    monkeypatch.setattr(usage_ledger, "_backoff", lambda attempt: None)  # no jitter sleeps in the test
    recorder_dynamodb = client("dynamodb")  # the client the recorder's handler uses
    recorder_dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", conflict, unique_id="conflicts")
    try:
        _send(aws, [e.model_dump_json() for e in events])
        delivery = _drain(aws)
    finally:
        recorder_dynamodb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="conflicts")

    assert calls["conflicts"] == K
    assert len(delivery.failures) == K // usage_ledger.CONFLICT_RETRIES  # exhausted retries -> redelivered
    assert delivery.records == len(events) + len(delivery.failures)
    llm = [e for e in events if e.type == "llm_call"]
    tools = [e for e in events if e.type == "tool_call"]
    totals = _report(aws, group_by=["day"], microdao_id=dao)["totals"]
    assert totals["requests"] == len(llm)
    assert totals["prompt_tokens"] == sum(e.prompt_tokens for e in llm)
    assert totals["completion_tokens"] == sum(e.completion_tokens for e in llm)
    assert totals["tool_calls"] == sum(not e.replay for e in tools)
    assert totals["tool_replays"] == sum(e.replay for e in tools)
    for agent in agents:  # and per agent, through the agent's own partition
        mine = [e for e in llm if e.agent_id == agent]
        assert _report(aws, group_by=["day"], agent_id=agent, microdao_id=dao)["totals"]["requests"] == len(mine)
    dlq = aws.clients["sqs"].receive_message(QueueUrl=aws.ref("UsageDeadLetterQueue"), WaitTimeSeconds=0)
    assert not dlq.get("Messages")


def test_corrections_keep_the_counter_item_small_and_a_failed_one_is_applied_on_redelivery(aws, monkeypatch):
    """A day's budget counter is corrected by every call of the microDAO: it must not carry a record of
    them (DynamoDB items stop at 400 KB, and each admission writing the item pays for its size). A
    correction whose counter write fails past its retries is redelivered and then applied exactly once."""
    from daarion_common import usage_ledger
    from daarion_common.aws import client
    from daarion_common.events import HeldCounter, Reservation

    aws.purge_queues()
    agent, dao = _ids()
    table, ddb = aws.ref("RateLimitTable"), aws.clients["dynamodb"]
    day_pk = f"dao#{dao}#d#test"
    held = 1000  # micro-dollars each call held on the day's budget
    ddb.put_item(TableName=table, Item={"pk": {"S": day_pk}, "usd_micros": {"N": str(60 * held)}})
    counters = [HeldCounter(pk=day_pk, attribute="usd_micros", amount=held)]
    reservation = Reservation(usd_micros=held, counters=counters)
    events = [llm_event(agent, dao, cost_usd=0.000100 + i / 1e6, reservation=reservation) for i in range(60)]
    billed = sum(usage_ledger.corrections(e)[(day_pk, "usd_micros")] + held for e in events)

    fail = {"left": usage_ledger.CONFLICT_RETRIES}  # the first correction exhausts its retries

    def conflict(**kwargs):
        sent = json.loads(kwargs["params"]["body"] or b"{}")  # the serialised request
        if sent.get("Key", {}).get("pk", {}).get("S") != day_pk or fail["left"] == 0:
            return None
        fail["left"] -= 1
        parsed = {
            "Error": {"Code": "TransactionConflictException", "Message": "Transaction is ongoing for the item"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        from botocore.awsrequest import AWSResponse

        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), parsed

    monkeypatch.setattr(usage_ledger, "_backoff", lambda attempt: None)
    recorder_dynamodb = client("dynamodb")
    recorder_dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", conflict, unique_id="conflicts")
    try:
        bodies = [e.model_dump_json() for e in events]
        _send(aws, bodies + bodies[:10])  # and ten redelivered
        delivery = _drain(aws)
    finally:
        recorder_dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", unique_id="conflicts")

    assert len(delivery.failures) == 1  # the failed correction went back to the queue, and was applied after
    item = ddb.get_item(TableName=table, Key={"pk": {"S": day_pk}}, ConsistentRead=True)["Item"]
    assert int(item["usd_micros"]["N"]) == billed  # every correction once, none twice
    assert set(item) == {"pk", "usd_micros"}  # nothing accumulates on the counter
    dlq = aws.clients["sqs"].receive_message(QueueUrl=aws.ref("UsageDeadLetterQueue"), WaitTimeSeconds=0)
    assert not dlq.get("Messages")
