"""The template's resources on LocalStack, through the same provisioning code as moto.

Opt-in: runs only when LOCALSTACK_ENDPOINT is set (e.g. http://localhost:4566)."""

from __future__ import annotations

import os
import uuid

import boto3
import pytest

from daarion_common.events import LlmCallEvent
from devstack.resources import provision

ENDPOINT = os.environ.get("LOCALSTACK_ENDPOINT")
pytestmark = [
    pytest.mark.localstack,
    pytest.mark.skipif(not ENDPOINT, reason="LOCALSTACK_ENDPOINT is not set (LocalStack tests are opt-in)"),
]


@pytest.fixture(scope="module")
def clients():
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    return {s: session.client(s, endpoint_url=ENDPOINT) for s in ("sqs", "dynamodb", "secretsmanager")}


def test_provisioning_is_idempotent_and_queues_round_trip(clients):
    _, first, _ = provision(clients, database_url=None, internal_secret="dev-secret-token")
    _, second, _ = provision(clients, database_url=None, internal_secret="dev-secret-token")
    assert first.physical["UsageQueue"]["Ref"] == second.physical["UsageQueue"]["Ref"]
    url = first.physical["UsageQueue"]["Ref"]
    event = LlmCallEvent(agent_id="a", microdao_id=f"m-{uuid.uuid4().hex[:6]}", latency_ms=1, status="ok", model="x")
    clients["sqs"].send_message(QueueUrl=url, MessageBody=event.model_dump_json())
    got = clients["sqs"].receive_message(QueueUrl=url, WaitTimeSeconds=2, MaxNumberOfMessages=10)["Messages"]
    assert any(event.event_id in m["Body"] for m in got)
    attrs = clients["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert "UsageDeadLetterQueue" in attrs["RedrivePolicy"]
    tables = clients["dynamodb"].list_tables()["TableNames"]
    assert {"daarion-local-UsageTable", "daarion-local-RateLimitTable"} <= set(tables)
