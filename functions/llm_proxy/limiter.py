"""Rate limits and budgets in DynamoDB, exact across any number of containers.

One ``TransactWriteItems`` per call (one AWS call on the hot path) updates every counter the call
touches, each with a condition that the counter has room; DynamoDB applies all or none, atomically,
so N concurrent containers can never admit more than the limit. Counters live in fixed windows, keyed
per tenant (:func:`tenant`: the microDAO and the agent, unambiguous whatever characters they hold):

- ``agent#{tenant}#m#{minute}``: ``requests`` (requests/minute/agent) and ``tokens`` (tokens/minute/agent);
- ``dao#{id}#h#{hour}``: ``requests`` (requests/hour/microDAO);
- ``dao#{id}#d#{day}``: ``usd_micros`` (USD/day/microDAO budget, in millionths of a dollar).

Tokens and dollars are reserved up front from an upper bound (``daarion_contracts.tokens`` for the prompt,
every choice at the capped completion limit, at the model's prices); a fallback to a dearer model first
extends the reservation (:func:`extend`). The :class:`Admission` says which counters hold how much; the
usage event carries it and the usage recorder corrects those counters to what was billed, off the hot path.
Each item expires (TTL ``expires_at``) a while after its window ends.

Every transaction carries a ``ClientRequestToken`` (a fresh one per attempt of ours, the same across the
SDK's own retries), so a retry after a lost response cannot count twice.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daarion_common.errors import ApiError
from daarion_common.settings import get_settings
from daarion_common.usage_ledger import tenant
from llm_proxy.config import LimitsConfig, LimitValues

_TTL_GRACE_S = 3600
_CONFLICT_RETRIES = 6


@dataclass(frozen=True)
class Counter:
    limit_name: str  # what the 429 names
    pk: str
    attribute: str
    increment: int
    limit: int  # the counter may reach at most this
    window_end: float


@dataclass(frozen=True)
class Held:
    """An amount held on one counter (what a correction adjusts)."""

    pk: str
    attribute: str  # ``tokens`` or ``usd_micros``
    amount: int


@dataclass
class Admission:
    """The outcome: what is held where, and (for the benchmark) ``aws_calls`` and ``aws_ms``."""

    enforced: bool
    now: float = 0.0
    tokens: int = 0
    usd_micros: int = 0
    held: list[Held] = field(default_factory=list)
    aws_calls: int = 0
    aws_ms: float = 0.0


def counters_for(
    limits: LimitValues, agent_id: str, microdao_id: str, tokens: int, usd_micros: int, now: float
) -> list[Counter]:
    minute, hour, day = int(now // 60), int(now // 3600), int(now // 86400)
    out: list[Counter] = []
    agent_pk = f"agent#{tenant(microdao_id, agent_id)}#m#{minute}"
    if limits.agent_requests_per_minute is not None:
        out.append(
            Counter(
                "agent_requests_per_minute",
                agent_pk,
                "requests",
                1,
                limits.agent_requests_per_minute,
                (minute + 1) * 60,
            )
        )
    if limits.agent_tokens_per_minute is not None:
        out.append(
            Counter(
                "agent_tokens_per_minute", agent_pk, "tokens", tokens, limits.agent_tokens_per_minute, (minute + 1) * 60
            )
        )
    if limits.microdao_requests_per_hour is not None:
        out.append(
            Counter(
                "microdao_requests_per_hour",
                f"dao#{microdao_id}#h#{hour}",
                "requests",
                1,
                limits.microdao_requests_per_hour,
                (hour + 1) * 3600,
            )
        )
    if limits.microdao_usd_per_day is not None:
        out.append(
            Counter(
                "microdao_usd_per_day",
                f"dao#{microdao_id}#d#{day}",
                "usd_micros",
                usd_micros,
                round(limits.microdao_usd_per_day * 1_000_000),
                (day + 1) * 86400,
            )
        )
    return out


def _too_big(counter: Counter) -> bool:
    return counter.increment > counter.limit


def _never_fits(counter: Counter) -> ApiError:
    """A call larger than the limit itself: no retry can help, so not a 429 (clients retry those)."""
    shown = counter.limit / 1_000_000 if counter.attribute == "usd_micros" else counter.limit
    needed = counter.increment / 1_000_000 if counter.attribute == "usd_micros" else counter.increment
    return ApiError(
        413,
        "request_over_limit",
        f"This call alone needs {needed:g} of limit {counter.limit_name} ({shown:g}); it can never be admitted. "
        "Lower max_tokens / n or shorten the prompt.",
        extra={"limit": counter.limit_name, "limit_value": shown},
    )


def _rejection(counter: Counter, now: float, detail: str = "") -> ApiError:
    retry_after = max(1, math.ceil(counter.window_end - now))
    shown = counter.limit / 1_000_000 if counter.attribute == "usd_micros" else counter.limit
    return ApiError(
        429,
        "rate_limited",
        f"Limit {counter.limit_name} ({shown:g}) reached{detail}; retry after {retry_after}s.",
        headers={"Retry-After": str(retry_after)},
        extra={"limit": counter.limit_name, "limit_value": shown, "retry_after_s": retry_after},
    )


def _transact_items(table: str, counters: list[Counter], now: float) -> list[dict[str, Any]]:
    """One Update per item: counters of the same item (agent requests and tokens) share one update."""
    by_pk: dict[str, list[Counter]] = {}
    for counter in counters:
        by_pk.setdefault(counter.pk, []).append(counter)
    items = []
    for pk, group in by_pk.items():
        names = {"#e": "expires_at"}
        values: dict[str, Any] = {":ttl": {"N": str(int(group[0].window_end) + _TTL_GRACE_S)}}
        adds, conditions = [], []
        for i, counter in enumerate(group):
            names[f"#a{i}"] = counter.attribute
            values[f":inc{i}"] = {"N": str(counter.increment)}
            values[f":cap{i}"] = {"N": str(counter.limit - counter.increment)}
            adds.append(f"#a{i} :inc{i}")
            conditions.append(f"(attribute_not_exists(#a{i}) OR #a{i} <= :cap{i})")
        items.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": pk}},
                    "UpdateExpression": f"ADD {', '.join(adds)} SET #e = :ttl",
                    "ConditionExpression": " AND ".join(conditions),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        )
    return items


def _which_counter(counters: list[Counter], pk: str, old: dict[str, Any] | None) -> Counter:
    group = [c for c in counters if c.pk == pk]
    for counter in group:
        current = int((old or {}).get(counter.attribute, {}).get("N", "0"))
        if current > counter.limit - counter.increment:
            return counter
    return group[0]


def admit(
    limits_config: LimitsConfig,
    agent_id: str,
    microdao_id: str,
    *,
    tokens: int,
    usd: float,
    now: float | None = None,
) -> Admission:
    """Count this call against every limit it falls under, or raise ApiError(429) naming the limit
    (413 ``request_over_limit`` when the call alone is larger than a limit).

    No table configured: locally the limits are off (said once in the log); deployed it is an error.
    """
    now = time.time() if now is None else now
    counters = counters_for(
        limits_config.for_call(agent_id, microdao_id), agent_id, microdao_id, tokens, math.ceil(usd * 1_000_000), now
    )
    return _apply(limits_config, counters, Admission(enforced=False, now=now), tokens, math.ceil(usd * 1_000_000))


def extend(
    limits_config: LimitsConfig, admission: Admission, agent_id: str, microdao_id: str, *, tokens: int, usd: float
) -> Admission:
    """Hold ``tokens`` and ``usd`` more on the counters of ``admission``'s windows (a fallback to a dearer
    model), or raise the limit's 429 and hold nothing more. Requests are not counted again."""
    micros = math.ceil(usd * 1_000_000)
    if tokens <= 0 and micros <= 0:
        return admission
    counters = [
        c
        for c in counters_for(
            limits_config.for_call(agent_id, microdao_id), agent_id, microdao_id,
            max(tokens, 0), max(micros, 0), admission.now,
        )
        if c.attribute in ("tokens", "usd_micros")
    ]  # fmt: skip
    return _apply(limits_config, counters, admission, max(tokens, 0), max(micros, 0))


def _apply(
    limits_config: LimitsConfig, counters: list[Counter], admission: Admission, tokens: int, usd_micros: int
) -> Admission:
    settings = get_settings()
    now = admission.now
    for counter in counters:
        if _too_big(counter):
            raise _never_fits(counter)
    if not counters:
        return admission
    table = settings.rate_limit_table
    if not table:
        if settings.is_local:
            return admission
        raise ApiError(503, "limiter_unconfigured", "RATE_LIMIT_TABLE is not set; refusing calls.")

    from botocore.exceptions import BotoCoreError, ClientError

    from daarion_common.aws import client

    ddb = client("dynamodb")
    items = _transact_items(table, counters, now)
    for attempt in range(_CONFLICT_RETRIES):
        started = time.perf_counter()
        try:
            admission.aws_calls += 1
            # a fresh token per attempt of ours (the previous one was cancelled: nothing applied); botocore's
            # own retries of this call reuse it, so a retry after a lost response is not counted twice
            ddb.transact_write_items(TransactItems=items, ClientRequestToken=str(uuid.uuid4()))
            admission.aws_ms += (time.perf_counter() - started) * 1000
            admission.enforced = True
            admission.tokens += tokens
            admission.usd_micros += usd_micros
            admission.held.extend(
                Held(c.pk, c.attribute, c.increment) for c in counters if c.attribute in ("tokens", "usd_micros")
            )
            return admission
        except ClientError as exc:
            admission.aws_ms += (time.perf_counter() - started) * 1000
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                return _limiter_down(limits_config, exc, admission)
            reasons = exc.response.get("CancellationReasons") or []
            for item, reason in zip(items, reasons, strict=False):
                if reason.get("Code") == "ConditionalCheckFailed":
                    pk = item["Update"]["Key"]["pk"]["S"]
                    raise _rejection(_which_counter(counters, pk, reason.get("Item")), now) from None
            # TransactionConflict: another container's transaction touched the same item; try again
            time.sleep(random.uniform(0, 0.01 * (2**attempt)))  # noqa: S311 - jitter, not crypto
        except BotoCoreError as exc:
            admission.aws_ms += (time.perf_counter() - started) * 1000
            return _limiter_down(limits_config, exc, admission)
    raise ApiError(503, "limiter_busy", "The rate limiter is contended; retry shortly.", headers={"Retry-After": "1"})


def _limiter_down(limits_config: LimitsConfig, exc: Exception, admission: Admission) -> Admission:
    from daarion_common.observability import logger

    logger.error(
        "rate limiter unreachable",
        extra={"error_type": type(exc).__name__, "policy": limits_config.on_limiter_error},
    )
    if limits_config.on_limiter_error == "open":
        admission.enforced = False
        return admission
    raise ApiError(
        503, "limiter_unavailable", "The rate limiter cannot be reached; refusing calls.", headers={"Retry-After": "5"}
    ) from exc


class Limiter:
    """The limiter part of the LLM service: the DynamoDB table ``RATE_LIMIT_TABLE`` (read at each call, so
    the settings decide) and the clock the windows are cut from. A test gives the service another one."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def admit(self, limits: LimitsConfig, agent_id: str, microdao_id: str, *, tokens: int, usd: float) -> Admission:
        return admit(limits, agent_id, microdao_id, tokens=tokens, usd=usd, now=self.clock())

    def extend(
        self, limits: LimitsConfig, admission: Admission, agent_id: str, microdao_id: str, *, tokens: int, usd: float
    ) -> Admission:
        return extend(limits, admission, agent_id, microdao_id, tokens=tokens, usd=usd)
