"""The local stack's patch to moto's TransactWriteItems (devstack/moto_patch.py) and its TTL sweeper
(devstack/ttl.py): same results as DynamoDB, without copying tables per transaction item."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from daarion_common.events import LlmCallEvent
from daarion_common.usage_ledger import transaction
from devstack import moto_patch
from devstack.ttl import sweep_expired

moto_patch.apply()


def _table(ddb, name: str = "usage") -> str:
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _event(i: int) -> LlmCallEvent:
    return LlmCallEvent(
        agent_id=f"agent-{i % 3}", microdao_id="dao-1", latency_ms=10.0, status="ok", model="gpt-4.1-mini",
        prompt_tokens=10, completion_tokens=5, total_tokens=15, occurred_at=datetime(2030, 1, 2, tzinfo=UTC),
    )  # fmt: skip


def _all_items(ddb, table: str) -> list[dict]:
    return sorted(
        (item for page in ddb.get_paginator("scan").paginate(TableName=table) for item in page["Items"]),
        key=lambda i: (i["pk"]["S"], i["sk"]["S"]),
    )


@pytest.fixture
def ddb(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def test_usage_transactions_apply_and_a_redelivery_changes_nothing(ddb):
    table = _table(ddb)
    events = [_event(i) for i in range(6)]
    for event in events:
        ddb.transact_write_items(TransactItems=transaction(table, event, 90))
    before = _all_items(ddb, table)
    assert len([i for i in before if i["pk"]["S"].startswith("EVENT#")]) == 6
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=transaction(table, events[2], 90))
    assert _all_items(ddb, table) == before  # the aggregates were rolled back item by item


def test_a_cancelled_transaction_restores_exactly_the_items_it_touched(ddb):
    table = _table(ddb)
    ddb.put_item(TableName=table, Item={"pk": {"S": "A"}, "sk": {"S": "1"}, "n": {"N": "1"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "GUARD"}, "sk": {"S": "x"}})
    before = _all_items(ddb, table)
    items = [
        {"Update": {"TableName": table, "Key": {"pk": {"S": "A"}, "sk": {"S": "1"}}, "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": "NEW"}, "sk": {"S": "1"}}}},
        {"Delete": {"TableName": table, "Key": {"pk": {"S": "A"}, "sk": {"S": "2"}}}},
        {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "GUARD"}, "sk": {"S": "x"}},
                            "ConditionExpression": "attribute_not_exists(pk)"}},
    ]  # fmt: skip
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
        ddb.transact_write_items(TransactItems=items)
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert _all_items(ddb, table) == before
    ddb.transact_write_items(TransactItems=items[:3])  # without the failing check it applies
    after = {(i["pk"]["S"], i["sk"]["S"]): i for i in _all_items(ddb, table)}
    assert after[("A", "1")]["n"] == {"N": "2"} and ("NEW", "1") in after


def test_no_table_is_copied_per_transaction(ddb, monkeypatch):
    """moto 5.2.5 deep-copies the whole table once per transaction item; patched, only touched items are."""
    from moto.dynamodb.models.table import Table

    table = _table(ddb)
    for i in range(20):
        ddb.transact_write_items(TransactItems=transaction(table, _event(i), 90))
    copied: list[str] = []
    real = copy.deepcopy

    def counting(obj, memo=None):
        copied.append(type(obj).__name__)
        return real(obj, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)
    ddb.transact_write_items(TransactItems=transaction(table, _event(99), 90))
    assert "Table" not in copied
    # the undo log copies the touched items that exist, and moto.s update_item copies each it updates
    assert copied.count("Item") <= 2 * 4
    assert Table.__name__ == "Table"


def test_the_patch_refuses_a_moto_without_the_whole_table_snapshot(monkeypatch):
    from moto.dynamodb import models

    monkeypatch.setattr(moto_patch, "_APPLIED", False)
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", lambda self, items: None)
    with pytest.raises(RuntimeError, match="no longer snapshots whole tables"):
        moto_patch.apply()


def test_ttl_sweep_deletes_only_expired_items(ddb):
    table = _table(ddb)
    for name, expires in (("old", 100), ("new", 10_000), ("none", None), ("text", "S")):
        item = {"pk": {"S": name}, "sk": {"S": "x"}}
        if expires == "S":
            item["expires_at"] = {"S": "soon"}
        elif expires is not None:
            item["expires_at"] = {"N": str(expires)}
        ddb.put_item(TableName=table, Item=item)
    assert sweep_expired(ddb, {table: "expires_at"}, now=5_000) == 1
    assert {i["pk"]["S"] for i in _all_items(ddb, table)} == {"new", "none", "text"}


def test_concurrent_conditional_updates_on_moto_server_are_atomic(monkeypatch):
    """20 threads race a conditional ADD capped at 10 on moto's threaded server: exactly 10 pass, as in DynamoDB."""
    from concurrent.futures import ThreadPoolExecutor

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = "http://{}:{}".format(*server.get_host_and_port())
        ddb = boto3.client(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        table = _table(ddb, f"race-{id(server)}")

        def take(_: int) -> bool:
            try:
                ddb.update_item(
                    TableName=table, Key={"pk": {"S": "agent"}, "sk": {"S": "minute"}},
                    UpdateExpression="ADD n :one", ConditionExpression="attribute_not_exists(n) OR n < :cap",
                    ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": "10"}},
                )  # fmt: skip
                return True
            except ddb.exceptions.ConditionalCheckFailedException:
                return False

        with ThreadPoolExecutor(20) as pool:
            admitted = sum(pool.map(take, range(20)))
        assert admitted == 10
    finally:
        server.stop()


def test_moto_keeps_only_the_objects_its_tables_and_queues_hold(ddb):
    """moto's instance tracker used to keep every model object ever made (each UpdateItem's copies, each
    SQS message): the local server grew without bound. Now what nothing holds is freed, and moto's
    dashboard still lists the live ones."""
    import gc

    from moto.dynamodb.models.dynamo_type import Item
    from moto.sqs.models import Message

    table = _table(ddb)
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="events")["QueueUrl"]
    for i in range(300):
        for request in transaction(table, _event(i), retention_days=1):  # one raw item + three aggregates
            ((op, args),) = request.items()
            if op == "Put":
                ddb.put_item(**args)
            else:
                ddb.update_item(**args)
        sqs.send_message(QueueUrl=queue, MessageBody=f"event {i}")
        (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    gc.collect()
    stored = len(_all_items(ddb, table))
    assert stored == 300 + 3 + 3 + 1  # raw events; per agent (3 agents); the microDAO's row per agent; month
    alive = [o for o in gc.get_objects() if isinstance(o, Item)]
    assert stored <= len(alive) <= stored + 10  # before: ~4 copies per write stayed alive as well
    assert len(list(Item.instances_tracked)) == len(alive)  # the dashboard's view is what lives
    assert not [o for o in gc.get_objects() if isinstance(o, Message)]  # deleted messages are freed
