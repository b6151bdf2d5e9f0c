"""The usage API on the LLM Proxy's app: totals and series read from the usage ledger's aggregates.

``GET /internal/llm/usage?agent_id=&microdao_id=&from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|model|agent``
(and ``kind=llm|tool|all``).

``group_by`` takes one or two comma-separated dimensions (``agent,day`` gives a daily series per
agent). Reads are DynamoDB Queries on one partition with a sort-key range, never a scan.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from daarion_common.errors import ApiError

router = APIRouter()

MAX_DAYS = 366
DIMENSIONS = ("day", "model", "agent")


def _day(value: str | None, name: str, default: date) -> date:
    if not value:
        return default
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ApiError(
            422, "invalid_request", f"Invalid request: {name}: expected a date as YYYY-MM-DD",
            fields=[{"field": f"query.{name}", "message": "expected a date as YYYY-MM-DD"}],
        ) from None  # fmt: skip


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"Invalid request: {field}: {message}",
        fields=[{"field": f"query.{field}", "message": message}],
    )


@router.get("/internal/llm/usage")
def usage(
    agent_id: Annotated[str | None, Query(max_length=200)] = None,
    microdao_id: Annotated[str | None, Query(max_length=200)] = None,
    date_from: Annotated[str | None, Query(alias="from")] = None,
    date_to: Annotated[str | None, Query(alias="to")] = None,
    group_by: str = "day",
    kind: Literal["llm", "tool", "all"] = "all",
) -> dict[str, Any]:
    from daarion_common.aws import client
    from daarion_common.settings import get_settings
    from daarion_common.usage_ledger import query

    today = datetime.now(UTC).date()
    end = _day(date_to, "to", today)
    start = _day(date_from, "from", end - timedelta(days=6))
    if start > end:
        raise _invalid("from", "must not be after 'to'")
    if (end - start).days >= MAX_DAYS:
        raise _invalid("from", f"the period may span at most {MAX_DAYS} days")
    dims = [g.strip() for g in group_by.split(",") if g.strip()]
    if not dims or len(dims) > 2 or any(d not in DIMENSIONS for d in dims) or len(set(dims)) != len(dims):
        raise _invalid("group_by", "one or two of day, model, agent (comma-separated)")
    if "agent" in dims and not (agent_id or microdao_id):
        raise _invalid("group_by", "grouping by agent needs agent_id or microdao_id")
    table = get_settings().usage_table
    if not table:
        raise ApiError(503, "usage_unconfigured", "USAGE_TABLE is not configured.")
    try:
        report = query(
            client("dynamodb"), table, date_from=start, date_to=end, group_by=dims,
            agent_id=agent_id, microdao_id=microdao_id, kind=kind,
        )  # fmt: skip
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, BotoCoreError | ClientError):
            raise ApiError(503, "usage_unavailable", "The usage ledger (DynamoDB) could not be read.") from exc
        raise
    body = report.as_dict()
    body["filters"] = {"agent_id": agent_id, "microdao_id": microdao_id, "kind": kind}
    return body
