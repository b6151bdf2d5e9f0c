"""Bad input to the Memory Orchestrator, one row per (route x class of bad input), through the real Lambda
handler with API Gateway HTTP API v2 events: each is a 4xx with the documented code naming the field.

None of these reaches PostgreSQL (no database is configured here: a row that got past validation would
answer 503 ``database_unconfigured`` and fail its assertion).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from daarion_contracts.memory import MAX_DOCUMENT_CHARS, MAX_DOCUMENT_CHUNKS, MAX_LIST_OFFSET
from tests.conftest import LambdaContext, load_event

BASE = "/internal/agent-memory"
AGENT, DAO, CHANNEL = "agent:sofia", "microdao:7", "channel:general"
MEMORY_ID = "0b9e4f64-8f4e-4b8e-9a53-3f0f2a7c1d11"

BODIES: dict[str, dict[str, Any]] = {
    "query": {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL, "query": "бюджет", "limit": 5,
              "kinds": ["conversation"]},
    "store": {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL, "kind": "conversation",
              "content": {"user_message": "Що нового?", "agent_reply": "Проєкт X.", "timestamp": "2026-11-25T14:03Z"},
              "meta": {"topic": "news"}, "ttl_seconds": 3600},
    "summarize": {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL, "max_messages": 20,
                  "model": "gpt-4.1-mini"},
    "forget": {"microdao_id": DAO, "agent_id": AGENT, "channel_id": CHANNEL},
    "kb/documents": {"microdao_id": DAO, "agent_id": AGENT, "document_id": "handbook.md", "title": "Handbook",
                     "markdown": "# Treasury\n\nPaid in USDC.", "source": "https://example.org/handbook",
                     "meta": {"lang": "uk"}},
}  # fmt: skip
POST_ROUTES = list(BODIES)


def call(
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    *,
    raw: str | None = None,
    secret: str | None = "dev-secret-token",
) -> tuple[int, dict[str, Any]]:
    from memory.app import handler

    event = load_event("apigw_v2_post_memory_store.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    event["rawQueryString"] = urlencode(params or {})
    if params:
        event["queryStringParameters"] = {k: str(v) for k, v in params.items()}
    event["body"] = raw if raw is not None else (json.dumps(body) if body is not None else None)
    event["headers"].pop("content-length", None)
    if event["body"] is None:
        event["headers"].pop("content-type", None)
    if secret is None:
        event["headers"].pop("x-internal-secret")
    else:
        event["headers"]["x-internal-secret"] = secret
    response = handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def with_value(route: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(BODIES[route]))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def without(route: str, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in BODIES[route].items() if k not in keys}


# Every string of every body: ids, texts, and strings nested in content and meta.
STRING_FIELDS = {
    "query": [("agent_id",), ("microdao_id",), ("channel_id",), ("query",)],
    "store": [("agent_id",), ("microdao_id",), ("channel_id",), ("content", "user_message"),
              ("content", "agent_reply"), ("content", "timestamp"), ("meta", "topic")],
    "summarize": [("agent_id",), ("microdao_id",), ("channel_id",), ("model",)],
    "forget": [("microdao_id",), ("agent_id",), ("channel_id",)],
    "kb/documents": [("microdao_id",), ("agent_id",), ("document_id",), ("title",), ("markdown",), ("source",),
                     ("meta", "lang")],
}  # fmt: skip
ID_FIELDS = {
    "query": ["agent_id", "microdao_id", "channel_id"],
    "store": ["agent_id", "microdao_id", "channel_id"],
    "summarize": ["agent_id", "microdao_id", "channel_id", "model"],
    "forget": ["microdao_id", "agent_id", "channel_id"],
    "kb/documents": ["microdao_id", "agent_id", "document_id"],
}


# Within MAX_DOCUMENT_CHARS, but one chunk per tiny headed section: more than MAX_DOCUMENT_CHUNKS.
TINY_SECTIONS = "".join(f"# {i}\n{i}\n" for i in range(MAX_DOCUMENT_CHUNKS + 1))


def _rows() -> list[Any]:
    rows: list[Any] = []
    for route, fields in STRING_FIELDS.items():
        for path in fields:
            name = ".".join(path)
            rows.append(pytest.param(route, with_value(route, path, "a\x00b"), name, id=f"{route}-nul-{name}"))
            rows.append(pytest.param(route, with_value(route, path, "a\ud800b"), name, id=f"{route}-surrogate-{name}"))
    for route, ids in ID_FIELDS.items():
        for name in ids:
            rows.append(pytest.param(route, with_value(route, (name,), "agent\x07"), name, id=f"{route}-bell-{name}"))
            rows.append(pytest.param(route, with_value(route, (name,), "a\nb"), name, id=f"{route}-newline-{name}"))
            rows.append(pytest.param(route, with_value(route, (name,), "x" * 201), name, id=f"{route}-long-{name}"))
            rows.append(pytest.param(route, with_value(route, (name,), ""), name, id=f"{route}-empty-{name}"))
            rows.append(pytest.param(route, with_value(route, (name,), 7), name, id=f"{route}-number-{name}"))
    # a NUL in a meta key, deep inside content, in a list of kinds
    rows += [
        pytest.param("store", with_value("store", ("meta",), {"a\x00": 1}), "meta", id="store-nul-meta-key"),
        pytest.param("store", with_value("store", ("content",), {"a": {"b": ["ok", "x\x00"]}}), "content.a.b.1",
                     id="store-nul-nested-content"),
        pytest.param("store", with_value("store", ("content",), "plain\x00text"), "content", id="store-nul-text"),
        pytest.param("kb/documents", with_value("kb/documents", ("meta",), {"k": {"deep": "\x00"}}), "meta.k.deep",
                     id="kb-nul-nested-meta"),
    ]  # fmt: skip
    # numbers are numbers; ranges
    for route, name, values in (
        ("query", "limit", ['"10"', "true", "0", "51", "2.5", "null"]),
        ("store", "ttl_seconds", ['"3600"', "true", "59", "315360001"]),
        ("summarize", "max_messages", ['"20"', "true", "1", "501"]),
    ):
        for value in values:
            body = with_value(route, (name,), json.loads(value))
            rows.append(pytest.param(route, body, name, id=f"{route}-{name}={value}"))
    # missing required fields and the rules in the schema (anyOf, oneOf, enums)
    rows += [
        pytest.param("query", without("query", "query"), "query", id="query-missing-query"),
        pytest.param("query", without("query", "agent_id"), "agent_id", id="query-missing-agent"),
        pytest.param("query", with_value("query", ("query",), "   "), "query", id="query-blank-query"),
        pytest.param("query", with_value("query", ("kinds",), ["note"]), "kinds.0", id="query-unknown-kind"),
        pytest.param("store", without("store", "kind"), "kind", id="store-missing-kind"),
        pytest.param("store", without("store", "microdao_id"), "microdao_id", id="store-missing-microdao"),
        pytest.param("store", with_value("store", ("content",), {}), "content", id="store-empty-content"),
        pytest.param("store", with_value("store", ("content",), {"x": None}), "content", id="store-no-text"),
        pytest.param("store", with_value("store", ("tier",), "long"), "body", id="store-long-not-kb"),
        pytest.param("store", with_value("store", ("extra",), 1), "extra", id="store-unknown-field"),
        pytest.param("summarize", without("summarize", "channel_id"), "channel_id", id="summarize-missing-channel"),
        pytest.param("forget", without("forget", "agent_id", "channel_id"), "body", id="forget-no-scope"),
        pytest.param("forget", {"microdao_id": DAO, "agent_id": None, "channel_id": None}, "body",
                     id="forget-null-scope"),
        pytest.param("forget", with_value("forget", ("tiers",), ["forever"]), "tiers.0", id="forget-unknown-tier"),
        pytest.param("kb/documents", without("kb/documents", "markdown"), "body", id="kb-no-body"),
        pytest.param("kb/documents", with_value("kb/documents", ("text",), "both"), "body", id="kb-text-and-markdown"),
        pytest.param("kb/documents", with_value("kb/documents", ("markdown",), " \n "), "body", id="kb-blank-body"),
        pytest.param("kb/documents", without("kb/documents", "title"), "title", id="kb-missing-title"),
        pytest.param("kb/documents", with_value("kb/documents", ("document_id",), "/etc/passwd"), "document_id",
                     id="kb-id-leading-slash"),
        pytest.param("kb/documents", with_value("kb/documents", ("markdown",), "x" * (MAX_DOCUMENT_CHARS + 1)),
                     "markdown", id="kb-too-large"),
        pytest.param("kb/documents", with_value("kb/documents", ("markdown",), TINY_SECTIONS), "markdown",
                     id="kb-too-many-chunks"),
    ]  # fmt: skip
    return rows


@pytest.mark.parametrize(("route", "body", "field"), _rows())
def test_a_bad_body_is_a_422_naming_the_field(route: str, body: dict[str, Any], field: str) -> None:
    status, answer = call("POST", f"{BASE}/{route}", body)
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_request"
    assert field in [f["field"] for f in answer["error"]["fields"]], answer


def test_a_lone_surrogate_sent_as_a_json_escape_is_a_422() -> None:
    raw = json.dumps(BODIES["query"], ensure_ascii=False).replace('"бюджет"', '"\\ud800"')
    assert "\\ud800" in raw
    status, answer = call("POST", f"{BASE}/query", raw=raw)
    assert status == 422 and [f["field"] for f in answer["error"]["fields"]] == ["query"]


@pytest.mark.parametrize("route", POST_ROUTES)
def test_invalid_json_is_a_400(route: str) -> None:
    status, answer = call("POST", f"{BASE}/{route}", raw='{"agent_id": ')
    assert status == 400 and answer["error"]["code"] == "invalid_json"


GET_AND_DELETE = [
    ("GET", f"{BASE}/kb/documents", {"microdao_id": DAO}),
    ("DELETE", f"{BASE}/kb/documents/handbook.md", {"microdao_id": DAO}),
    ("DELETE", f"{BASE}/{MEMORY_ID}", {"microdao_id": DAO}),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "field"),
    [
        *[pytest.param(m, p, {"microdao_id": v}, "query.microdao_id", id=f"{m}-{p.rsplit('/', 1)[-1]}-{label}")
          for m, p, _ in GET_AND_DELETE
          for label, v in (("nul", "microdao\x007"), ("bell", "microdao\x07"), ("long", "m" * 201), ("empty", ""))],
        *[pytest.param(m, p, {}, "query.microdao_id", id=f"{m}-{p.rsplit('/', 1)[-1]}-missing")
          for m, p, _ in GET_AND_DELETE],
        pytest.param("GET", f"{BASE}/kb/documents", {"microdao_id": DAO, "offset": 9223372036854775808},
                     "query.offset", id="list-offset-2^63"),
        pytest.param("GET", f"{BASE}/kb/documents", {"microdao_id": DAO, "offset": MAX_LIST_OFFSET + 1},
                     "query.offset", id="list-offset-over-bound"),
        pytest.param("GET", f"{BASE}/kb/documents", {"microdao_id": DAO, "offset": -1}, "query.offset",
                     id="list-offset-negative"),
        pytest.param("GET", f"{BASE}/kb/documents", {"microdao_id": DAO, "limit": 0}, "query.limit", id="list-limit-0"),
        pytest.param("GET", f"{BASE}/kb/documents", {"microdao_id": DAO, "limit": 501}, "query.limit",
                     id="list-limit-501"),
        pytest.param("GET", f"{BASE}/kb/documents", {"microdao_id": DAO, "limit": "true"}, "query.limit",
                     id="list-limit-true"),
        pytest.param("GET", f"{BASE}/kb/documents", {"microdao_id": DAO, "limit": "1e3"}, "query.limit",
                     id="list-limit-float"),
        pytest.param("DELETE", f"{BASE}/kb/documents/{quote('a' + chr(0) + 'b')}", {"microdao_id": DAO},
                     "path.document_id", id="delete-document-nul"),
        pytest.param("DELETE", f"{BASE}/kb/documents/{quote('a' + chr(7))}", {"microdao_id": DAO},
                     "path.document_id", id="delete-document-bell"),
        pytest.param("DELETE", f"{BASE}/kb/documents/{'d' * 201}", {"microdao_id": DAO}, "path.document_id",
                     id="delete-document-long"),
        pytest.param("DELETE", f"{BASE}/not-a-uuid", {"microdao_id": DAO}, "path.memory_id",
                     id="delete-memory-not-uuid"),
        pytest.param("DELETE", f"{BASE}/{quote(MEMORY_ID[:-1] + chr(0))}", {"microdao_id": DAO}, "path.memory_id",
                     id="delete-memory-nul"),
    ],
)  # fmt: skip
def test_bad_query_and_path_parameters_are_a_422_naming_them(
    method: str, path: str, params: dict[str, Any], field: str
) -> None:
    status, answer = call(method, path, params=params)
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_request"
    assert field in [f["field"] for f in answer["error"]["fields"]], answer


@pytest.mark.parametrize(
    ("method", "path", "body", "params"),
    [
        *[("POST", f"{BASE}/{route}", BODIES[route], None) for route in POST_ROUTES],
        *[(method, path, None, params) for method, path, params in GET_AND_DELETE],
    ],
)
@pytest.mark.parametrize("secret", [None, "wrong"])
def test_every_route_needs_the_secret(
    method: str, path: str, body: dict[str, Any] | None, params: dict[str, Any] | None, secret: str | None
) -> None:
    status, answer = call(method, path, body, params, secret=secret)
    assert status == 401 and answer["error"]["code"] == "unauthorized"
