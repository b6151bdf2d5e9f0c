"""Create the template's queues, tables and secrets on the local AWS endpoint (moto or LocalStack).

Only resource types the functions talk to at run time are created; the rest (alarms, the API
itself, IAM) have no local meaning and are listed as skipped.
"""

from __future__ import annotations

import json
from typing import Any

from devstack.template import REGION, Resolver, resources_of_type

STACK = "daarion-local"

SECRET_VALUES_ENV = {"InternalSecret": "INTERNAL_SECRET"}


def _name(logical_id: str) -> str:
    return f"{STACK}-{logical_id}"


def create_resources(
    template: dict[str, Any],
    resolver: Resolver,
    clients: dict[str, Any],
    secret_values: dict[str, str],
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Create what the functions need; returns (physical ids by logical id, names of skipped resources).

    ``resolver.physical`` is filled as resources are created so later ones can refer to earlier ones.
    """
    physical = resolver.physical
    account = resolver.account_id
    sqs, ddb, sm = clients["sqs"], clients["dynamodb"], clients["secretsmanager"]
    created: list[str] = []

    def enabled(res: dict[str, Any]) -> bool:
        return "Condition" not in res or resolver.condition(res["Condition"])

    # Queues first without redrive, so dead-letter targets exist; then attach redrive policies.
    queues = {k: v for k, v in resources_of_type(template, "AWS::SQS::Queue").items() if enabled(v)}
    for logical_id, res in queues.items():
        props = res.get("Properties", {})
        attrs = {
            "VisibilityTimeout": str(props.get("VisibilityTimeout", 30)),
            "MessageRetentionPeriod": str(props.get("MessageRetentionPeriod", 345600)),
        }
        name = _name(logical_id)
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        physical[logical_id] = {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}
        created.append(logical_id)
    for logical_id, res in queues.items():
        redrive = res.get("Properties", {}).get("RedrivePolicy")
        if redrive:
            policy = resolver.resolve(redrive)
            sqs.set_queue_attributes(
                QueueUrl=physical[logical_id]["Ref"],
                Attributes={"RedrivePolicy": json.dumps({k: str(v) for k, v in policy.items()})},
            )

    for logical_id, res in resources_of_type(template, "AWS::DynamoDB::Table").items():
        if not enabled(res):
            continue
        props = res["Properties"]
        name = _name(logical_id)
        try:
            ddb.create_table(
                TableName=name,
                AttributeDefinitions=props["AttributeDefinitions"],
                KeySchema=props["KeySchema"],
                BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
                **(
                    {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]}
                    if "GlobalSecondaryIndexes" in props
                    else {}
                ),
            )
            ddb.get_waiter("table_exists").wait(TableName=name)
        except ddb.exceptions.ResourceInUseException:
            pass  # a persistent endpoint (LocalStack) kept it from a previous run
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            try:
                ddb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
                )
            except ddb.exceptions.ClientError as exc:  # already enabled on a persistent endpoint
                if "already enabled" not in str(exc).lower():
                    raise
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
        physical[logical_id] = {"Ref": name, "Arn": arn}
        created.append(logical_id)

    for logical_id, res in resources_of_type(template, "AWS::SecretsManager::Secret").items():
        if not enabled(res):
            continue
        if logical_id not in secret_values:
            raise KeyError(f"the local stack has no value for secret {logical_id}; add it to SECRET_VALUES_ENV")
        arn = put_secret(sm, _name(logical_id), secret_values[logical_id])
        physical[logical_id] = {"Ref": arn, "Arn": arn}
        created.append(logical_id)

    for logical_id in resources_of_type(template, "AWS::Serverless::Function"):
        name = _name(logical_id)
        physical[logical_id] = {"Ref": name, "Arn": f"arn:aws:lambda:{REGION}:{account}:function:{name}"}
    for logical_id in resources_of_type(template, "AWS::Serverless::HttpApi"):
        physical[logical_id] = {"Ref": "local"}

    skipped = [k for k in template.get("Resources", {}) if k not in physical]
    return physical, skipped


def put_secret(sm: Any, name: str, value: str) -> str:
    """Create or overwrite a secret; returns its ARN."""
    try:
        return str(sm.create_secret(Name=name, SecretString=value)["ARN"])
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=name, SecretString=value)
        return str(sm.describe_secret(SecretId=name)["ARN"])


def db_secret_value(database_url: str | None) -> dict[str, Any]:
    """The RDS-style JSON secret the functions read (DB_SECRET_ARN), describing the local database."""
    info: dict[str, Any] = {}
    if database_url:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(database_url)
    return {
        "engine": "postgres",
        "host": info.get("host", "localhost"),
        "port": int(info.get("port") or 5432),
        "username": info.get("user", "postgres"),
        "password": info.get("password", ""),
        "dbname": info.get("dbname", "postgres"),
    }


def provision(
    clients: dict[str, Any], *, database_url: str | None, internal_secret: str, account_id: str | None = None
) -> tuple[dict[str, Any], Resolver, list[str]]:
    """Create everything template.yaml declares that the functions use, as `sam deploy` would with
    ``DatabaseSecretArn`` pointing at a secret that describes the local database.

    ``account_id`` is the endpoint's account (asked of its STS when not given): moto's 123456789012,
    LocalStack's 000000000000. Returns (template, resolver with physical ids filled in, skipped
    resources). Idempotent.
    """
    from devstack.template import load_template

    if account_id is None:
        account_id = str(clients["sts"].get_caller_identity()["Account"]) if "sts" in clients else None

    template = load_template()
    db_arn = put_secret(clients["secretsmanager"], f"{STACK}-DatabaseSecret", json.dumps(db_secret_value(database_url)))
    resolver = Resolver(template, {"Stage": "local", "DatabaseSecretArn": db_arn}, {}, **_account(account_id))
    _, skipped = create_resources(template, resolver, clients, secret_values={"InternalSecret": internal_secret})
    return template, resolver, skipped


def _account(account_id: str | None) -> dict[str, str]:
    return {"account_id": account_id} if account_id else {}
