"""The three HTTP handlers driven with real API Gateway HTTP API (v2) events."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from tests.conftest import load_event

SERVICES = [
    ("llm_proxy", "llm-proxy", "/internal/llm/health", "apigw_v2_post_llm_proxy.json"),
    ("memory", "memory", "/internal/agent-memory/health", "apigw_v2_post_memory_query.json"),
    ("toolcore", "toolcore", "/internal/tools/health", "apigw_v2_post_tools_call.json"),
]


def invoke(function: str, event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    handler = importlib.import_module(f"{function}.app").handler
    response = handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def at(event: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    return event


@pytest.mark.parametrize(("function", "service", "health_path", "_event"), SERVICES)
@pytest.mark.parametrize("path_kind", ["shared", "own"])
def test_health_answers_without_secret(function, service, health_path, _event, path_kind, lambda_context):
    event = load_event("apigw_v2_get_health.json")
    if path_kind == "own":
        at(event, "GET", health_path)
    status, body = invoke(function, event, lambda_context)
    assert status == 200
    assert body == {"status": "ok", "service": service, "version": body["version"]}


@pytest.mark.parametrize(("function", "_service", "_health", "event_file"), SERVICES)
@pytest.mark.parametrize("secret", [None, "", "wrong-secret", "dev-secret-token-but-longer"])
def test_missing_or_wrong_secret_is_401(function, _service, _health, event_file, secret, lambda_context):
    event = load_event(event_file)
    if secret is None:
        del event["headers"]["x-internal-secret"]
    else:
        event["headers"]["x-internal-secret"] = secret
    status, body = invoke(function, event, lambda_context)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert body["request_id"] == event["requestContext"]["requestId"]
    assert "dev-secret-token" not in json.dumps(body)


@pytest.mark.parametrize(("function", "_service", "_health", "event_file"), SERVICES)
def test_unknown_path_without_secret_is_401_not_404(function, _service, _health, event_file, lambda_context):
    event = at(load_event(event_file), "GET", "/internal/secret-probe")
    del event["headers"]["x-internal-secret"]
    status, _ = invoke(function, event, lambda_context)
    assert status == 401


@pytest.mark.parametrize(("function", "_service", "_health", "event_file"), SERVICES)
def test_secret_from_environment_replaces_local_default(
    function, _service, _health, event_file, lambda_context, monkeypatch
):
    monkeypatch.setenv("INTERNAL_SECRET", "rotated-secret")
    from daarion_common.settings import get_settings

    get_settings.cache_clear()
    status, _ = invoke(function, load_event(event_file), lambda_context)  # sends dev-secret-token
    assert status == 401
    event = load_event(event_file)
    event["headers"]["x-internal-secret"] = "rotated-secret"
    status, _ = invoke(function, event, lambda_context)
    assert status != 401


MALFORMED = [
    ("llm_proxy", "apigw_v2_post_llm_proxy.json", lambda b: b["metadata"].pop("agent_id"), "metadata.agent_id"),
    ("llm_proxy", "apigw_v2_post_llm_proxy.json", lambda b: b.update(messages=[]), "messages"),
    ("llm_proxy", "apigw_v2_post_llm_proxy.json", lambda b: b["messages"][0].update(role="wizard"), "messages.0.role"),
    ("memory", "apigw_v2_post_memory_query.json", lambda b: b.update(limit=500), "limit"),
    ("memory", "apigw_v2_post_memory_query.json", lambda b: b.pop("query"), "query"),
    ("memory", "apigw_v2_post_memory_store.json", lambda b: b.update(kind="gossip"), "kind"),
    ("toolcore", "apigw_v2_post_tools_call.json", lambda b: b.pop("tool_id"), "tool_id"),
    ("toolcore", "apigw_v2_post_tools_call.json", lambda b: b.update(args="not-an-object"), "args"),
]


@pytest.mark.parametrize(("function", "event_file", "break_it", "field"), MALFORMED)
def test_malformed_body_is_422_naming_the_field(function, event_file, break_it, field, lambda_context):
    event = load_event(event_file)
    body = json.loads(event["body"])
    break_it(body)
    event["body"] = json.dumps(body)
    status, out = invoke(function, event, lambda_context)
    assert status == 422
    assert out["error"]["code"] == "invalid_request"
    assert field in [f["field"] for f in out["error"]["fields"]]
    assert field in out["error"]["message"]


@pytest.mark.parametrize(("function", "_service", "_health", "event_file"), SERVICES)
def test_invalid_json_is_400(function, _service, _health, event_file, lambda_context):
    event = load_event(event_file)
    event["body"] = '{"model": "gpt-4.1-mini", '
    status, out = invoke(function, event, lambda_context)
    assert status == 400
    assert out["error"]["code"] == "invalid_json"


def test_handler_emits_request_metrics_as_emf(lambda_context, capsys):
    invoke("toolcore", load_event("apigw_v2_get_health.json"), lambda_context)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert "Requests" in names
