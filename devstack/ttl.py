"""DynamoDB's Time to Live, emulated on a local endpoint that does not apply it (moto).

DynamoDB deletes items whose TTL attribute (epoch seconds) is in the past, typically within a few
days; until then they are still returned. Locally the stack sweeps the template's TTL tables every
DEVSTACK_TTL_SWEEP_SECONDS (default 60), so short-lived items (rate-limit windows, idempotency
records) do not pile up in moto's memory over a working day. Items without the attribute, or with
a non-number in it, are never deleted (as in DynamoDB).
"""

from __future__ import annotations

import time
from typing import Any


def sweep_expired(dynamodb: Any, tables: dict[str, str], now: float | None = None) -> int:
    """Delete the expired items of ``tables`` (physical name -> TTL attribute); returns how many."""
    cutoff = int(now if now is not None else time.time())
    deleted = 0
    for table, attribute in tables.items():
        keys = [k["AttributeName"] for k in dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]]
        names = {"#ttl": attribute, **{f"#k{i}": k for i, k in enumerate(keys)}}
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression=", ".join(["#ttl", *(f"#k{i}" for i in range(len(keys)))]),
            ExpressionAttributeNames=names,
        )
        now_value = {":now": {"N": str(cutoff)}}
        for page in pages:
            for item in page.get("Items", []):
                ttl = item.get(attribute, {})
                if "N" not in ttl or float(ttl["N"]) >= cutoff:  # not a number, or not yet expired: kept
                    continue
                key = {k: item[k] for k in keys}
                try:  # only if still expired: an item rewritten since the scan stays
                    dynamodb.delete_item(
                        TableName=table,
                        Key=key,
                        ConditionExpression="#ttl < :now",
                        ExpressionAttributeNames={"#ttl": attribute},
                        ExpressionAttributeValues=now_value,
                    )
                    deleted += 1
                except dynamodb.exceptions.ConditionalCheckFailedException:
                    pass
    return deleted
