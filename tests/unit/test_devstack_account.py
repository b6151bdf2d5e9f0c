"""The ARNs the local stack derives carry the account of the endpoint it talks to (moto's 123456789012,
LocalStack's 000000000000), asked of the endpoint's STS — never a constant that disagrees with it."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from devstack import template as tpl
from devstack.resources import provision


@pytest.mark.parametrize("account", ["123456789012", "000000000000"])
def test_provisioned_arns_use_the_endpoint_account(monkeypatch, account):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", account)  # moto answering as LocalStack's default account
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        clients = {s: boto3.client(s, region_name="us-east-1") for s in ("sqs", "dynamodb", "secretsmanager", "sts")}
        template, resolver, _ = provision(clients, database_url=None, internal_secret="s")
        arns = [v["Arn"] for v in resolver.physical.values() if "Arn" in v]
        assert arns and all(f":{account}:" in arn for arn in arns), arns
        assert resolver.resolve({"Ref": "AWS::AccountId"}) == account
        functions = tpl.functions(template, resolver)
        assert all(account in spec.environment.get("USAGE_QUEUE_URL", account) for spec in functions.values())
