"""GET /internal/llm/usage through the LLM Proxy's real handler (API Gateway v2 events), on moto over HTTP."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest

from daarion_common.usage_ledger import record
from tests.conftest import load_event
from tests.fixtures.usage import llm_event, tool_event


def _get(params: dict[str, str], context) -> tuple[int, dict]:
    from llm_proxy.app import handler

    event = load_event("apigw_v2_get_tools.json")
    query = urlencode(params)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/internal/llm/usage"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /internal/llm/usage"
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(parse_qsl(query))
    response = handler(event, context)
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def ledger(aws):
    """Two agents of one microDAO and one of another, over three days."""
    suffix = uuid.uuid4().hex[:6]
    dao, other = f"dao-{suffix}", f"other-{suffix}"
    sofia, max_ = f"sofia-{suffix}", f"max-{suffix}"
    events = [
        llm_event(sofia, dao, occurred_at=datetime(2026, 11, 18, 9, tzinfo=UTC), prompt_tokens=100,
                  completion_tokens=10, total_tokens=110, cost_usd=0.001),
        llm_event(sofia, dao, occurred_at=datetime(2026, 11, 19, 9, tzinfo=UTC), model="deepseek-r1", prompt_tokens=50,
                  completion_tokens=50, total_tokens=100, cost_usd=0.002, status="error", error_code="upstream_error"),
        llm_event(max_, dao, occurred_at=datetime(2026, 11, 19, 10, tzinfo=UTC), prompt_tokens=10, completion_tokens=5,
                  total_tokens=15, cost_usd=0.0005),
        tool_event(max_, dao, occurred_at=datetime(2026, 11, 20, 11, tzinfo=UTC)),
        llm_event(f"x-{suffix}", other, occurred_at=datetime(2026, 11, 19, 9, tzinfo=UTC), cost_usd=9.0),
    ]  # fmt: skip
    for e in events:
        record(aws.clients["dynamodb"], aws.ref("UsageTable"), e, 90)
    return {"dao": dao, "other": other, "sofia": sofia, "max": max_}


def test_microdao_totals_and_daily_series(ledger, lambda_context):
    status, body = _get({"microdao_id": ledger["dao"], "from": "2026-11-18", "to": "2026-11-20"}, lambda_context)
    assert status == 200
    assert body["totals"]["requests"] == 3 and body["totals"]["errors"] == 1
    assert body["totals"]["prompt_tokens"] == 160 and body["totals"]["completion_tokens"] == 65
    assert body["totals"]["cost_usd"] == pytest.approx(0.0035)
    assert body["totals"]["tool_calls"] == 1
    assert [(s["key"]["day"], s["requests"]) for s in body["series"]] == [
        ("2026-11-18", 1),
        ("2026-11-19", 2),
        ("2026-11-20", 0),
    ]


def test_group_by_agent_and_model(ledger, lambda_context):
    _, by_agent = _get(
        {"microdao_id": ledger["dao"], "from": "2026-11-18", "to": "2026-11-20", "group_by": "agent"}, lambda_context
    )
    costs = {s["key"]["agent"]: s["cost_usd"] for s in by_agent["series"]}
    assert costs == {ledger["sofia"]: pytest.approx(0.003), ledger["max"]: pytest.approx(0.0005)}
    _, by_model = _get(
        {
            "agent_id": ledger["sofia"],
            "microdao_id": ledger["dao"],
            "from": "2026-11-18",
            "to": "2026-11-20",
            "group_by": "model",
            "kind": "llm",
        },
        lambda_context,
    )
    assert {s["key"]["model"]: s["requests"] for s in by_model["series"]} == {"gpt-4.1-mini": 1, "deepseek-r1": 1}
    _, two = _get(
        {"microdao_id": ledger["dao"], "from": "2026-11-19", "to": "2026-11-19", "group_by": "agent,day"},
        lambda_context,
    )
    assert {(s["key"]["agent"], s["key"]["day"]) for s in two["series"]} == {
        (ledger["sofia"], "2026-11-19"),
        (ledger["max"], "2026-11-19"),
    }


def test_an_agent_filter_inside_a_microdao_and_isolation(ledger, lambda_context):
    _, body = _get(
        {"microdao_id": ledger["dao"], "agent_id": ledger["max"], "from": "2026-11-01", "to": "2026-11-30"},
        lambda_context,
    )
    assert body["totals"]["requests"] == 1 and body["totals"]["tool_calls"] == 1
    _, other = _get({"microdao_id": ledger["other"], "from": "2026-11-01", "to": "2026-11-30"}, lambda_context)
    assert other["totals"]["cost_usd"] == pytest.approx(9.0) and other["totals"]["requests"] == 1


def test_period_outside_the_data_is_empty(ledger, lambda_context):
    _, body = _get({"microdao_id": ledger["dao"], "from": "2026-10-01", "to": "2026-10-31"}, lambda_context)
    assert body["totals"]["requests"] == 0 and body["series"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01"}, "query.from"),
        ({"to": "yesterday"}, "query.to"),
        ({"from": "2026-11-20", "to": "2026-11-01"}, "query.from"),
        ({"from": "2024-01-01", "to": "2026-11-01"}, "query.from"),
        ({"group_by": "planet"}, "query.group_by"),
        ({"group_by": "agent"}, "query.group_by"),
        ({"group_by": "day,model,agent", "microdao_id": "d"}, "query.group_by"),
        ({"kind": "video"}, "query.kind"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(aws, lambda_context, params, field):
    status, body = _get(params, lambda_context)
    assert status == 422
    assert field in [f["field"] for f in body["error"]["fields"]]


def test_usage_api_requires_the_secret(aws, lambda_context):
    from llm_proxy.app import handler

    event = load_event("apigw_v2_get_tools.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/internal/llm/usage"
    del event["headers"]["x-internal-secret"]
    assert handler(event, lambda_context)["statusCode"] == 401


def test_unreadable_ledger_is_503(aws, monkeypatch, lambda_context):
    from daarion_common.settings import get_settings

    monkeypatch.setenv("USAGE_TABLE", "no-such-table")
    get_settings.cache_clear()
    status, body = _get({"microdao_id": "d"}, lambda_context)
    assert status == 503 and body["error"]["code"] == "usage_unavailable"
