"""Provisioning from template.yaml against moto's server over HTTP (the same path LocalStack takes)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from devstack.resources import provision


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def clients(moto_endpoint):
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return {s: session.client(s, endpoint_url=moto_endpoint) for s in ("sqs", "dynamodb", "secretsmanager")}


def test_everything_the_functions_use_is_created_and_idempotent(clients):
    template, resolver, skipped = provision(
        clients, database_url="postgresql://u:p@db.local:6432/mem", internal_secret="s3"
    )
    provision(
        clients, database_url="postgresql://u:p@db.local:6432/mem", internal_secret="s3"
    )  # a second run is harmless
    physical = resolver.physical
    # only what watches the functions is left to AWS: alarms, log groups and their metric filters
    observability = {"AWS::CloudWatch::Alarm", "AWS::Logs::LogGroup", "AWS::Logs::MetricFilter"}
    expected = {k for k, r in template["Resources"].items() if r["Type"] in observability}
    assert set(skipped) == expected and {"UsageDeadLetterAlarm", "UsageReconcileAlarm"} <= expected
    sqs, ddb, sm = clients["sqs"], clients["dynamodb"], clients["secretsmanager"]
    attrs = sqs.get_queue_attributes(QueueUrl=physical["UsageQueue"]["Ref"], AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == str(template["Resources"]["UsageQueue"]["Properties"]["VisibilityTimeout"])
    redrive = json.loads(attrs["RedrivePolicy"])
    assert (
        redrive["deadLetterTargetArn"] == physical["UsageDeadLetterQueue"]["Arn"]
        and int(redrive["maxReceiveCount"]) == 5
    )
    ttl = ddb.describe_time_to_live(TableName=physical["RateLimitTable"]["Ref"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"
    assert sm.get_secret_value(SecretId=physical["InternalSecret"]["Ref"])["SecretString"] == "s3"
    db = json.loads(sm.get_secret_value(SecretId=resolver.parameters["DatabaseSecretArn"])["SecretString"])
    assert (db["host"], db["port"], db["username"], db["dbname"]) == ("db.local", 6432, "u", "mem")
