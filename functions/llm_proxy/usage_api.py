"""The usage API on the LLM Proxy's app: totals and series read from the usage ledger's aggregates.

``GET /internal/llm/usage?agent_id=&microdao_id=&from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|model|agent``
(and ``kind=llm|tool|all``).

``group_by`` takes one or two comma-separated dimensions (``agent,day`` gives a daily series per
agent). Reads are DynamoDB Queries on one partition with a sort-key range, never a scan. The period is
bounded (at most ``MAX_USAGE_DAYS`` days, within ``USAGE_YEARS``), so a report's worst case is a bounded
number of Queries.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from daarion_common.errors import ApiError
from daarion_contracts import errors
from daarion_contracts.llm import MAX_USAGE_DAYS, USAGE_PATH, USAGE_YEARS, UsageReport
from daarion_contracts.types import Identifier

router = APIRouter()

DIMENSIONS = ("day", "model", "agent")
_DAY = r"^\d{4}-\d{2}-\d{2}$"
_GROUP_BY = r"^(day|model|agent)(,(day|model|agent))?$"
_FIRST_DAY, _LAST_DAY = date(USAGE_YEARS[0], 1, 1), date(USAGE_YEARS[1], 12, 31)


def _invalid(*problems: tuple[str, str]) -> ApiError:
    fields = [{"field": f"query.{field}", "message": message} for field, message in problems]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return ApiError(422, "invalid_request", f"Invalid request: {summary}", fields=fields)


def _day(value: str | None, name: str, problems: list[tuple[str, str]]) -> date | None:
    if value is None:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        problems.append((name, "expected a date as YYYY-MM-DD"))
        return None
    if not _FIRST_DAY <= day <= _LAST_DAY:
        problems.append((name, f"must be between {_FIRST_DAY.isoformat()} and {_LAST_DAY.isoformat()}"))
        return None
    return day


@router.get(
    USAGE_PATH,
    response_model=UsageReport,
    responses=errors.responses(
        401,
        422,
        503,
        r503="`usage_unconfigured`: no usage table is configured; `usage_unavailable`: the usage table cannot be "
        "read; `auth_unconfigured`: no internal secret is configured",
    ),
    summary="Usage report",
    description=f"Totals and a series per `group_by` from the usage ledger. The period is `from`..`to` (UTC days, "
    f"both included; default: the 7 days to today), at most {MAX_USAGE_DAYS} days, between "
    f"{_FIRST_DAY.isoformat()} and {_LAST_DAY.isoformat()}.",
)
def usage(
    agent_id: Annotated[Identifier | None, Query()] = None,
    microdao_id: Annotated[Identifier | None, Query()] = None,
    date_from: Annotated[str | None, Query(alias="from", pattern=_DAY, description="YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, Query(alias="to", pattern=_DAY, description="YYYY-MM-DD")] = None,
    group_by: Annotated[
        str, Query(pattern=_GROUP_BY, description="One or two of day, model, agent, comma-separated.")
    ] = "day",
    kind: Literal["llm", "tool", "all"] = "all",
) -> dict[str, Any]:
    from daarion_common.aws import client
    from daarion_common.settings import get_settings
    from daarion_common.usage_ledger import query

    problems: list[tuple[str, str]] = []
    given_to, given_from = _day(date_to, "to", problems), _day(date_from, "from", problems)
    dims = group_by.split(",")
    if len(set(dims)) != len(dims):
        problems.append(("group_by", "one or two of day, model, agent (comma-separated), each once"))
    elif agent_id and not microdao_id:
        problems.append(("microdao_id", "required with agent_id: an agent's usage is its usage in one microDAO"))
    elif "agent" in dims and not (agent_id or microdao_id):
        problems.append(("group_by", "grouping by agent needs agent_id or microdao_id"))
    if problems:
        raise _invalid(*problems)
    end = given_to or min(datetime.now(UTC).date(), _LAST_DAY)
    start = given_from or max(end - timedelta(days=6), _FIRST_DAY)
    if start > end:
        raise _invalid(("from", "must not be after 'to'"))
    if (end - start).days >= MAX_USAGE_DAYS:
        raise _invalid(("from", f"the period may span at most {MAX_USAGE_DAYS} days"))
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
