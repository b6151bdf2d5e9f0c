"""The usage ledger in DynamoDB: one raw item per event and the aggregates it increments.

One table (``USAGE_TABLE``: ``pk`` + ``sk``, TTL on ``expires_at``). Every usage event is written
in ONE ``TransactWriteItems`` call of four items, so a redelivered event is a no-op and the
aggregates can never count an event twice or half:

=============================  =====================================  ==============================
item                           pk                                     sk
=============================  =====================================  ==============================
raw event (expires by TTL)     ``EVENT#<event_id>``                   ``EVENT``
per agent per day              ``AGENT#<tenant>``                     ``DAY#<date>#<resource>``
per microDAO per day           ``MICRODAO#<microdao_id>``             ``DAY#<date>#AGENT#<agent>#<resource>``
per resource per day           ``MONTH#<yyyy-mm>``                    ``DAY#<date>#<resource>``
=============================  =====================================  ==============================

``resource`` is ``LLM#<logical model>`` or ``TOOL#<tool id>``; ``tenant`` is the microDAO and the agent
(:func:`tenant`): an agent's series is always one microDAO's agent. The raw put is conditional on the
event id not existing; if it exists the whole transaction is cancelled and nothing changes.

Contention: every event of a model and day updates the same aggregates, and DynamoDB cancels a transaction
that touches an item another transaction is writing (``TransactionConflict``). :func:`record` retries those
with jittered exponential backoff (the raw put keeps it exactly once), with a ``ClientRequestToken``
derived from the event id (an SDK retry after a lost response is not applied twice).

Corrections (:func:`correct`): an LLM call's event carries what it held on the rate-limit counters; the
recorder adds ``billed - held`` to each counter with one conditional ``UpdateItem`` per counter item (never
a transaction: a single write that meets the proxy's limiter transaction is the one that fails, with
``TransactionConflictException``, and is retried here — the proxy's admission is never cancelled by it).
Each correction is marked applied by a small item of its own (``corr#<event digest>#<counter pk>``,
expiring by TTL), written first, so a redelivered event corrects nothing twice.
Reads (the usage API, the report) are Queries on one partition with a sort-key range — never a scan.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from daarion_common.events import LlmCallEvent, ToolCallEvent

UsageEventModel = LlmCallEvent | ToolCallEvent
GroupBy = Literal["day", "model", "agent"]

# Counters every aggregate item carries (DynamoDB numbers; ADD is atomic).
COUNTERS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "latency_ms_sum",
    "fallbacks",
    "streamed",
    "tool_calls",
    "tool_errors",
    "tool_replays",
)

ITEMS_PER_EVENT = 4  # one raw put + three aggregate updates, in one transaction


def tenant(microdao_id: str, agent_id: str) -> str:
    """One key part for an agent of a microDAO; the length prefix keeps ``a#b``/``c`` and ``a``/``b#c`` apart."""
    return f"{len(microdao_id)}:{microdao_id}#{agent_id}"


def resource_of(event: UsageEventModel) -> str:
    return f"LLM#{event.model}" if isinstance(event, LlmCallEvent) else f"TOOL#{event.tool_id}"


def increments(event: UsageEventModel) -> dict[str, Decimal]:
    """What one event adds to every aggregate it touches."""
    failed = 1 if event.status == "error" else 0
    latency = Decimal(str(round(event.latency_ms, 3)))
    if isinstance(event, LlmCallEvent):
        return {
            "requests": Decimal(1),
            "errors": Decimal(failed),
            "prompt_tokens": Decimal(event.prompt_tokens),
            "completion_tokens": Decimal(event.completion_tokens),
            "total_tokens": Decimal(event.total_tokens),
            "cost_usd": Decimal(str(event.cost_usd)),
            "latency_ms_sum": latency,
            "fallbacks": Decimal(1 if event.fallback_used else 0),
            "streamed": Decimal(1 if event.streamed else 0),
        }
    if event.replay:  # an idempotent replay: nothing ran again, so it is not another call
        return {"tool_replays": Decimal(1), "latency_ms_sum": latency}
    return {"tool_calls": Decimal(1), "tool_errors": Decimal(failed), "latency_ms_sum": latency}


def _update(table: str, pk: str, sk: str, adds: dict[str, Decimal], labels: dict[str, str]) -> dict[str, Any]:
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    add_parts, set_parts = [], []
    for i, (attr, value) in enumerate(adds.items()):
        names[f"#a{i}"] = attr
        values[f":a{i}"] = {"N": str(value)}
        add_parts.append(f"#a{i} :a{i}")
    for i, (attr, value) in enumerate(labels.items()):
        names[f"#l{i}"] = attr
        values[f":l{i}"] = {"S": value}
        set_parts.append(f"#l{i} = :l{i}")
    expression = "ADD " + ", ".join(add_parts)
    if set_parts:
        expression += " SET " + ", ".join(set_parts)
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def transaction(table: str, event: UsageEventModel, retention_days: int) -> list[dict[str, Any]]:
    """The TransactItems that record ``event`` exactly once (first item: the conditional raw put)."""
    day = event.occurred_at.date().isoformat()
    month = day[:7]
    resource = resource_of(event)
    adds = increments(event)
    expires = int(event.occurred_at.timestamp()) + retention_days * 86400
    raw = {
        "pk": {"S": f"EVENT#{event.event_id}"},
        "sk": {"S": "EVENT"},
        "body": {"S": event.model_dump_json()},  # the whole event, for audits and replays
        "expires_at": {"N": str(expires)},
    }
    labels = {"agent_id": event.agent_id, "microdao_id": event.microdao_id, "resource": resource, "day": day}
    return [
        {
            "Put": {
                "TableName": table,
                "Item": raw,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        _update(table, f"AGENT#{tenant(event.microdao_id, event.agent_id)}", f"DAY#{day}#{resource}", adds, labels),
        _update(table, f"MICRODAO#{event.microdao_id}", f"DAY#{day}#AGENT#{event.agent_id}#{resource}", adds, labels),
        _update(table, f"MONTH#{month}", f"DAY#{day}#{resource}", adds, {"resource": resource, "day": day}),
    ]


CONFLICT_RETRIES = 8


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(1.0, 0.02 * (2**attempt))))  # noqa: S311 - jitter, not crypto


def _conflict(exc: Any) -> bool:
    """A transaction cancelled only because another one was writing the same item (no condition failed)."""
    reasons = exc.response.get("CancellationReasons") or []
    codes = {r.get("Code") for r in reasons}
    return "TransactionConflict" in codes and "ConditionalCheckFailed" not in codes


def record(dynamodb: Any, table: str, event: UsageEventModel, retention_days: int) -> bool:
    """Write ``event`` and its aggregates atomically. Returns False if it was already recorded.

    Conflicts with other events' transactions are retried with jitter; after :data:`CONFLICT_RETRIES` the
    error is raised (the message is redelivered)."""
    items = transaction(table, event, retention_days)
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"usage-event:{event.event_id}"))
    for attempt in range(CONFLICT_RETRIES):
        try:
            dynamodb.transact_write_items(TransactItems=items, ClientRequestToken=token)
            return True
        except dynamodb.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False  # this event id is already in the ledger: a redelivery, change nothing
            if not _conflict(exc) or attempt + 1 == CONFLICT_RETRIES:
                raise
            _backoff(attempt)
    raise AssertionError("unreachable")


def corrections(event: UsageEventModel) -> dict[tuple[str, str], int]:
    """(counter pk, attribute) -> amount to add so that the counter holds what was billed, not the bound."""
    if not isinstance(event, LlmCallEvent) or event.reservation is None or event.charge == "reserved":
        return {}
    billed = {
        "tokens": event.prompt_tokens + event.completion_tokens,
        "usd_micros": math.ceil(round(event.cost_usd * 1_000_000, 6)),
    }
    held: dict[tuple[str, str], int] = {}
    for counter in event.reservation.counters:
        key = (counter.pk, counter.attribute)
        held[key] = held.get(key, 0) + counter.amount
    return {key: billed[key[1]] - amount for key, amount in held.items() if billed[key[1]] != amount}


MARKER_TTL_S = 2 * 86400  # longer than any counter lives (a day's window + the limiter's grace)


def correct(dynamodb: Any, rate_limit_table: str, event: UsageEventModel) -> int:
    """Apply :func:`corrections` to the rate-limit counters, once per event per counter item; returns how
    many counter items changed.

    Per counter item, two single-item writes (never a transaction, see the module's doc): first a marker
    item ``corr#<event digest>#<counter pk>`` put only if absent (expires by TTL after the counter), then
    the counter's ``ADD``. A redelivered event finds the marker and changes nothing. If the counter's
    write fails (conflicts past the retries), the marker is taken back and the error raised, so SQS
    redelivers it; only a crash between the two writes loses a correction, and a lost correction leaves the
    reservation held (the counter over-counts: a budget is never overspent by it). The counter items stay
    their own size however many events a day sees (a set of applied events on a day's budget item would
    grow towards DynamoDB's 400 KB item limit on a busy microDAO, and every admission would pay for it)."""
    by_pk: dict[str, dict[str, int]] = {}
    for (pk, attribute), delta in corrections(event).items():
        by_pk.setdefault(pk, {})[attribute] = delta
    digest = hashlib.sha256(event.event_id.encode()).hexdigest()[:32]
    expires = int(event.occurred_at.timestamp()) + MARKER_TTL_S
    changed = 0
    for pk, deltas in by_pk.items():
        marker = {"pk": {"S": f"corr#{digest}#{pk}"}}
        try:
            dynamodb.put_item(
                TableName=rate_limit_table,
                Item={**marker, "expires_at": {"N": str(expires)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            continue  # applied already (a redelivery)
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds = []
        for i, (attribute, delta) in enumerate(sorted(deltas.items())):
            names[f"#a{i}"] = attribute
            values[f":d{i}"] = {"N": str(delta)}
            adds.append(f"#a{i} :d{i}")
        kwargs = {
            "TableName": rate_limit_table,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": "ADD " + ", ".join(adds),
            # the item exists (the admission wrote it) unless its window has expired: then nothing to correct
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        try:
            for attempt in range(CONFLICT_RETRIES):
                try:
                    dynamodb.update_item(**kwargs)
                    changed += 1
                    break
                except dynamodb.exceptions.ConditionalCheckFailedException:
                    break  # the window is gone
                except dynamodb.exceptions.TransactionConflictException:
                    if attempt + 1 == CONFLICT_RETRIES:
                        raise
                    _backoff(attempt)
        except Exception:
            dynamodb.delete_item(TableName=rate_limit_table, Key=marker)  # let the redelivery apply it
            raise
    return changed


# ---------------------------------------------------------------------------------------- reading


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms_sum: Decimal = Decimal(0)
    fallbacks: int = 0
    streamed: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_replays: int = 0

    def add(self, item: dict[str, Any]) -> None:
        for name in COUNTERS:
            if name in item:
                current = getattr(self, name)
                value = Decimal(item[name]["N"]) if isinstance(item[name], dict) else Decimal(str(item[name]))
                setattr(self, name, current + (value if isinstance(current, Decimal) else int(value)))

    def as_dict(self) -> dict[str, Any]:
        calls = self.requests + self.tool_calls
        return {
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": float(round(self.cost_usd, 8)),
            "avg_latency_ms": float(round(self.latency_ms_sum / calls, 2)) if calls else None,
            "fallbacks": self.fallbacks,
            "streamed": self.streamed,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "tool_replays": self.tool_replays,
        }


@dataclass
class UsageReport:
    date_from: date
    date_to: date
    group_by: list[str]
    source: str
    totals: Totals = field(default_factory=Totals)
    series: dict[tuple[str, ...], Totals] = field(default_factory=lambda: defaultdict(Totals))

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "group_by": self.group_by,
            "source": self.source,
            "totals": self.totals.as_dict(),
            "series": [
                {"key": dict(zip(self.group_by, key, strict=True)), **totals.as_dict()}
                for key, totals in sorted(self.series.items())
            ],
        }


def _months(date_from: date, date_to: date) -> list[str]:
    months, current = [], date_from.replace(day=1)
    while current <= date_to:
        months.append(current.strftime("%Y-%m"))
        current = (current + timedelta(days=32)).replace(day=1)
    return months


def _query_all(dynamodb: Any, table: str, pk: str, sk_from: str, sk_to: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":pk": {"S": pk}, ":a": {"S": sk_from}, ":b": {"S": sk_to}},
    }
    while True:
        page = dynamodb.query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def query(
    dynamodb: Any,
    table: str,
    *,
    date_from: date,
    date_to: date,
    group_by: list[str],
    agent_id: str | None = None,
    microdao_id: str | None = None,
    kind: Literal["llm", "tool", "all"] = "all",
) -> UsageReport:
    """Totals and series for a period from the aggregates: Queries on one partition, never a scan.

    With ``microdao_id`` and ``agent_id`` that agent's partition in that microDAO is read; with only
    ``microdao_id`` the microDAO's; with neither, one partition per month. ``agent_id`` alone is refused
    (ValueError): the same agent id in two microDAOs is two agents. ``group_by`` holds up to two
    of day, model, agent (``model`` is the resource: a logical model or ``tool:<id>``).
    """
    sk_from, sk_to = f"DAY#{date_from.isoformat()}", f"DAY#{date_to.isoformat()}#\uffff"
    if agent_id and not microdao_id:
        raise ValueError("agent_id needs microdao_id")
    if microdao_id and agent_id:
        source = f"AGENT#{tenant(microdao_id, agent_id)}"
        items = _query_all(dynamodb, table, source, sk_from, sk_to)
    elif microdao_id:
        source = f"MICRODAO#{microdao_id}"
        items = _query_all(dynamodb, table, source, sk_from, sk_to)
    else:
        if "agent" in group_by:
            raise ValueError("group_by=agent needs agent_id or microdao_id")
        source = "MONTH#*"
        items = [
            i for m in _months(date_from, date_to) for i in _query_all(dynamodb, table, f"MONTH#{m}", sk_from, sk_to)
        ]
    report = UsageReport(date_from, date_to, group_by, source)
    for item in items:
        resource = item["resource"]["S"]
        if kind == "llm" and not resource.startswith("LLM#"):
            continue
        if kind == "tool" and not resource.startswith("TOOL#"):
            continue
        labels = {
            "day": item["day"]["S"],
            "model": resource[4:] if resource.startswith("LLM#") else "tool:" + resource[5:],
            "agent": item.get("agent_id", {}).get("S", ""),
        }
        report.totals.add(item)
        report.series[tuple(labels[g] for g in group_by)].add(item)
    return report


def parse_day(value: str | None, default: date) -> date:
    if not value:
        return default
    return datetime.strptime(value, "%Y-%m-%d").date()
