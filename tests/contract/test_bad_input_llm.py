"""Bad input on every LLM Proxy route, through the real Lambda handler with API Gateway v2 events.

One row per (route x bad-input class): the HTTP status, the error ``code`` and the field named in
``error.fields``. On the chat and embeddings routes every call, however malformed, is counted by
exactly one usage event, ``status: error`` with the same code, whose caller ids are never the invalid
values that were sent (``unknown`` instead) and which serialises to JSON.

Lone surrogates are sent as the JSON escape ``"\\ud800"`` in the raw body (what a buggy client sends;
a Python ``str`` holding one could not even be encoded).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from daarion_contracts.llm import (
    EMBEDDINGS_PATH,
    MAX_BODY_BYTES,
    MAX_EMBEDDING_CHARS,
    MAX_EMBEDDING_INPUTS,
    MAX_LOCAL_EMBEDDING_CHARS,
    MAX_LOCAL_EMBEDDING_TOKENS,
    MAX_PROMPT_CHARS,
    PROXY_PATH,
    USAGE_PATH,
    V1_CHAT_PATH,
    V1_EMBEDDINGS_PATH,
)
from tests.fixtures.llm_proxy import apigw_event

AGENT, DAO, CHANNEL = "agent:sofia", "microdao:7", "channel:general"
SURROGATE = "<<lone-surrogate>>"  # replaced by the JSON escape \ud800 in the raw body
NUL, CONTROL, C1, LONG = "agent\u0000sofia", "agent\u0001sofia", "agent\u0085sofia", "a" * 201
IDENTITY = {"x-agent-id": AGENT, "x-microdao-id": DAO}


def _meta(**more: Any) -> dict[str, Any]:
    return {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL, **more}


def proxy(**over: Any) -> dict[str, Any]:
    body = {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "system", "content": "You are Sofia."}, {"role": "user", "content": "Привіт"}],
        "max_tokens": 64,
        "metadata": _meta(),
    }
    return {**body, **over}


def chat(**over: Any) -> dict[str, Any]:
    return {**{"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Привіт"}]}, **over}


def v1_emb(**over: Any) -> dict[str, Any]:
    return {**{"input": "Привіт, світе"}, **over}


def int_emb(**over: Any) -> dict[str, Any]:
    return {**{"input": ["Привіт, світе"], "metadata": _meta()}, **over}


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    target = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


def _nested(depth: int) -> str:
    return (
        '{"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x"}], "x": '
        + "[" * depth
        + "]" * depth
        + "}"
    )


# (id, method, path, body, headers, query, status, code, field); body: dict (JSON) or str (raw)
ROWS: list[tuple[str, str, str, Any, dict[str, str], dict[str, str], int, str, str | None]] = []


def row(id_: str, method: str, path: str, body: Any, status: int, code: str, field: str | None, *,
        headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> None:  # fmt: skip
    ROWS.append((id_, method, path, body, headers or {}, query or {}, status, code, field))


# ------------------------------------------------------------------ POST /internal/llm/proxy
P = PROXY_PATH
for cls, bad in (("nul", "x\u0000y"), ("surrogate", SURROGATE)):
    row(f"proxy-{cls}-content", "POST", P, proxy(messages=[{"role": "user", "content": bad}]), 422, "invalid_request",
        "messages.0.content")  # fmt: skip
    row(f"proxy-{cls}-content-part", "POST", P, proxy(messages=[{"role": "user", "content": [{"type": "text",
        "text": bad}]}]), 422, "invalid_request", "messages.0.content.0.text")  # fmt: skip
    row(f"proxy-{cls}-model", "POST", P, proxy(model=bad), 422, "invalid_request", "model")
    for key in ("agent_id", "microdao_id", "channel_id", "note"):
        row(f"proxy-{cls}-metadata-{key}", "POST", P, proxy(metadata=_meta(**{key: bad})), 422, "invalid_request",
            f"metadata.{key}")  # fmt: skip
    row(f"proxy-{cls}-tools", "POST", P, proxy(tools=[{"type": "function", "function": {"name": bad}}]), 422,
        "invalid_request", "tools.0.function.name")  # fmt: skip
    row(f"proxy-{cls}-key", "POST", P, proxy(response_format={bad: "x"}), 422, "invalid_request", "response_format")
for cls, bad in (("control", CONTROL), ("c1", C1), ("long", LONG), ("blank", "   "), ("empty", "")):
    for key in ("agent_id", "microdao_id", "channel_id"):
        row(f"proxy-{cls}-{key}", "POST", P, proxy(metadata=_meta(**{key: bad})), 422, "invalid_request",
            f"metadata.{key}")  # fmt: skip
    row(f"proxy-{cls}-model", "POST", P, proxy(model=bad), 422, "invalid_request", "model")
row("proxy-header-control", "POST", P, proxy(), 422, "invalid_request", "header.X-Agent-Id",
    headers={"x-agent-id": CONTROL})  # fmt: skip
for name, value in (("string", "10"), ("bool", True), ("float", 10.5), ("zero", 0), ("too-many", 200_001)):
    row(f"proxy-max_tokens-{name}", "POST", P, proxy(max_tokens=value), 422, "invalid_request", "max_tokens")
for name, value in (("string", "0.5"), ("bool", True), ("too-hot", 2.5), ("negative", -1)):
    row(f"proxy-temperature-{name}", "POST", P, proxy(temperature=value), 422, "invalid_request", "temperature")
row("proxy-top_p-zero", "POST", P, proxy(top_p=0), 422, "invalid_request", "top_p")
row("proxy-messages-string", "POST", P, proxy(messages="hello"), 422, "invalid_request", "messages")
row("proxy-messages-empty", "POST", P, proxy(messages=[]), 422, "invalid_request", "messages")
row("proxy-role", "POST", P, proxy(messages=[{"role": "wizard", "content": "x"}]), 422, "invalid_request",
    "messages.0.role")  # fmt: skip
row("proxy-content-number", "POST", P, proxy(messages=[{"role": "user", "content": 5}]), 422, "invalid_request",
    "messages.0.content")  # fmt: skip
row("proxy-prompt-too-long", "POST", P, proxy(messages=[{"role": "user", "content": "я" * (MAX_PROMPT_CHARS + 1)}]),
    422, "invalid_request", "messages")  # fmt: skip
row("proxy-too-many-tools", "POST", P, proxy(tools=[{"type": "function"}] * 129), 422, "invalid_request", "tools")
row("proxy-unknown-field", "POST", P, proxy(stream=True), 422, "invalid_request", "stream")
for key in ("model", "messages", "metadata"):
    row(f"proxy-missing-{key}", "POST", P, _without(proxy(), key), 422, "invalid_request", key)
row("proxy-missing-agent", "POST", P, _without(proxy(), "metadata", "agent_id"), 422, "invalid_request",
    "metadata.agent_id")  # fmt: skip
row("proxy-not-an-object", "POST", P, [1, 2], 422, "invalid_request", "body")
row("proxy-no-body", "POST", P, "", 422, "invalid_request", "body")
row("proxy-invalid-json", "POST", P, '{"model": "gpt-4.1-mini", ', 400, "invalid_json", None)
row("proxy-invalid-utf8", "POST", P, b'{"model": "\xff"}', 400, "invalid_json", None)
row("proxy-nested-deep", "POST", P, _nested(10_000), 422, "invalid_request", "body")
row("proxy-nested-33", "POST", P, _nested(40), 422, "invalid_request", None)
row("proxy-huge-body", "POST", P, '{"x": "' + "a" * MAX_BODY_BYTES + '"}', 413, "payload_too_large", None)
row("proxy-unknown-model", "POST", P, proxy(model="gpt-17"), 404, "model_not_found", None)

# ------------------------------------------------------------------ POST /v1/chat/completions
C = V1_CHAT_PATH
for cls, bad in (("nul", "x\u0000y"), ("surrogate", SURROGATE)):
    row(f"chat-{cls}-content", "POST", C, chat(messages=[{"role": "user", "content": bad}]), 422, "invalid_request",
        "messages.0.content", headers=IDENTITY)  # fmt: skip
    row(f"chat-{cls}-passthrough", "POST", C, chat(user=bad), 422, "invalid_request", "user", headers=IDENTITY)
    row(f"chat-{cls}-metadata-agent", "POST", C, chat(metadata={"agent_id": bad, "microdao_id": DAO}), 422,
        "invalid_request", "metadata.agent_id")  # fmt: skip
for cls, bad in (("control", CONTROL), ("c1", C1), ("long", LONG), ("blank", "  ")):
    row(f"chat-{cls}-metadata-agent", "POST", C, chat(metadata={"agent_id": bad, "microdao_id": DAO}), 422,
        "invalid_request", "metadata.agent_id")  # fmt: skip
    row(f"chat-{cls}-metadata-channel", "POST", C, chat(metadata={**_meta(), "channel_id": bad}), 422,
        "invalid_request", "metadata.channel_id")  # fmt: skip
for header in ("X-Agent-Id", "X-Microdao-Id", "X-Channel-Id"):
    for cls, bad in (("control", CONTROL), ("c1", C1), ("long", LONG), ("blank", "  ")):
        row(f"chat-header-{header}-{cls}", "POST", C, chat(), 422, "invalid_request", f"header.{header}",
            headers={**IDENTITY, header.lower(): bad})  # fmt: skip
row("chat-no-caller", "POST", C, chat(), 422, "invalid_request", "metadata.agent_id")
row("chat-no-microdao", "POST", C, chat(), 422, "invalid_request", "metadata.microdao_id",
    headers={"x-agent-id": AGENT})  # fmt: skip
for name, value in (("string", "10"), ("bool", True), ("zero", 0)):
    row(f"chat-max_tokens-{name}", "POST", C, chat(max_tokens=value), 422, "invalid_request", "max_tokens",
        headers=IDENTITY)  # fmt: skip
    row(f"chat-max_completion_tokens-{name}", "POST", C, chat(max_completion_tokens=value), 422, "invalid_request",
        "max_completion_tokens", headers=IDENTITY)  # fmt: skip
row("chat-stream-string", "POST", C, chat(stream="yes"), 422, "invalid_request", "stream", headers=IDENTITY)
row("chat-messages-empty", "POST", C, chat(messages=[]), 422, "invalid_request", "messages", headers=IDENTITY)
row("chat-missing-model", "POST", C, _without(chat(), "model"), 422, "invalid_request", "model", headers=IDENTITY)
row("chat-invalid-json", "POST", C, "{", 400, "invalid_json", None, headers=IDENTITY)
row("chat-nested-deep", "POST", C, _nested(10_000), 422, "invalid_request", "body", headers=IDENTITY)
row("chat-unknown-model", "POST", C, chat(model="gpt-17"), 404, "model_not_found", None, headers=IDENTITY)

# ------------------------------------------------------------------ POST /v1/embeddings
E = V1_EMBEDDINGS_PATH
for cls, bad in (("nul", "x\u0000y"), ("surrogate", SURROGATE)):
    row(f"v1emb-{cls}-input", "POST", E, v1_emb(input=bad), 422, "invalid_request", "input", headers=IDENTITY)
    row(f"v1emb-{cls}-input-list", "POST", E, v1_emb(input=["ok", bad]), 422, "invalid_request", "input.1",
        headers=IDENTITY)  # fmt: skip
    row(f"v1emb-{cls}-model", "POST", E, v1_emb(model=bad), 422, "invalid_request", "model", headers=IDENTITY)
    row(f"v1emb-{cls}-metadata-agent", "POST", E, v1_emb(metadata={"agent_id": bad, "microdao_id": DAO}), 422,
        "invalid_request", "metadata.agent_id")  # fmt: skip
for header in ("X-Agent-Id", "X-Microdao-Id"):
    row(f"v1emb-header-{header}-control", "POST", E, v1_emb(), 422, "invalid_request", f"header.{header}",
        headers={**IDENTITY, header.lower(): CONTROL})  # fmt: skip
row("v1emb-no-caller", "POST", E, v1_emb(), 422, "invalid_request", "metadata.agent_id")
row("v1emb-input-number", "POST", E, v1_emb(input=5), 422, "invalid_request", "input", headers=IDENTITY)
row("v1emb-input-empty-list", "POST", E, v1_emb(input=[]), 422, "invalid_request", "input", headers=IDENTITY)
row("v1emb-input-empty-string", "POST", E, v1_emb(input=""), 422, "invalid_request", "input", headers=IDENTITY)
row("v1emb-too-many-inputs", "POST", E, v1_emb(input=["x"] * (MAX_EMBEDDING_INPUTS + 1)), 422, "invalid_request",
    "input", headers=IDENTITY)  # fmt: skip
row("v1emb-too-many-chars", "POST", E, v1_emb(input=["я" * (MAX_EMBEDDING_CHARS // 2 + 1)] * 2), 422,
    "invalid_request", "input", headers=IDENTITY)  # fmt: skip
row("v1emb-local-chars", "POST", E, v1_emb(input=["я" * (MAX_LOCAL_EMBEDDING_CHARS + 1)]), 413, "payload_too_large",
    "input", headers=IDENTITY)  # fmt: skip
row("v1emb-local-tokens", "POST", E, v1_emb(input=["漢" * (MAX_LOCAL_EMBEDDING_TOKENS + 10)]), 413,
    "payload_too_large", "input", headers=IDENTITY)  # fmt: skip
row("v1emb-encoding", "POST", E, v1_emb(encoding_format="hex"), 422, "invalid_request", "encoding_format",
    headers=IDENTITY)  # fmt: skip
row("v1emb-input-type", "POST", E, v1_emb(input_type="document"), 422, "invalid_request", "input_type",
    headers=IDENTITY)  # fmt: skip
row("v1emb-missing-input", "POST", E, {}, 422, "invalid_request", "input", headers=IDENTITY)
row("v1emb-unknown-model", "POST", E, v1_emb(model="gpt-4.1-mini"), 404, "model_not_found", None, headers=IDENTITY)

# ------------------------------------------------------------------ POST /internal/llm/embeddings
I = EMBEDDINGS_PATH  # noqa: E741
for cls, bad in (("nul", "x\u0000y"), ("surrogate", SURROGATE)):
    row(f"emb-{cls}-input", "POST", I, int_emb(input=["ok", bad]), 422, "invalid_request", "input.1")
    row(f"emb-{cls}-model", "POST", I, int_emb(model=bad), 422, "invalid_request", "model")
    for key in ("agent_id", "microdao_id", "channel_id"):
        row(f"emb-{cls}-metadata-{key}", "POST", I, int_emb(metadata=_meta(**{key: bad})), 422, "invalid_request",
            f"metadata.{key}")  # fmt: skip
for cls, bad in (("control", CONTROL), ("long", LONG)):
    row(f"emb-{cls}-agent", "POST", I, int_emb(metadata=_meta(agent_id=bad)), 422, "invalid_request",
        "metadata.agent_id")  # fmt: skip
row("emb-input-string", "POST", I, int_emb(input="one text"), 422, "invalid_request", "input")
row("emb-input-empty", "POST", I, int_emb(input=[]), 422, "invalid_request", "input")
row("emb-input-blank-item", "POST", I, int_emb(input=["ok", ""]), 422, "invalid_request", "input")
row("emb-too-many-inputs", "POST", I, int_emb(input=["x"] * (MAX_EMBEDDING_INPUTS + 1)), 422, "invalid_request",
    "input")  # fmt: skip
row("emb-too-many-chars", "POST", I, int_emb(input=["я" * (MAX_EMBEDDING_CHARS // 2 + 1)] * 2), 422,
    "invalid_request", "input")  # fmt: skip
row("emb-local-chars", "POST", I, int_emb(input=["я" * (MAX_LOCAL_EMBEDDING_CHARS // 2 + 1)] * 2), 413,
    "payload_too_large", "input")  # fmt: skip
row("emb-input-type", "POST", I, int_emb(input_type=True), 422, "invalid_request", "input_type")
row("emb-unknown-field", "POST", I, int_emb(dimensions=64), 422, "invalid_request", "dimensions")
row("emb-missing-metadata", "POST", I, _without(int_emb(), "metadata"), 422, "invalid_request", "metadata")
row("emb-invalid-json", "POST", I, "[1, 2", 400, "invalid_json", None)

# ------------------------------------------------------------------ GET /internal/llm/usage
U = USAGE_PATH
row("usage-reversed-and-out-of-range", "GET", U, None, 422, "invalid_request", "query.to",
    query={"from": "9999-12-31", "to": "0001-01-01"})  # fmt: skip
row("usage-year-one", "GET", U, None, 422, "invalid_request", "query.from", query={"from": "0001-01-01",
    "to": "0001-01-03"})  # fmt: skip
row("usage-from-after-to", "GET", U, None, 422, "invalid_request", "query.from",
    query={"from": "2026-11-20", "to": "2026-11-01"})  # fmt: skip
row("usage-too-long", "GET", U, None, 422, "invalid_request", "query.from", query={"from": "2025-01-01",
    "to": "2026-01-02"})  # fmt: skip
row("usage-not-a-date", "GET", U, None, 422, "invalid_request", "query.from", query={"from": "2026-02-30"})
row("usage-not-a-date-pattern", "GET", U, None, 422, "invalid_request", "query.to", query={"to": "yesterday"})
row("usage-agent-control", "GET", U, None, 422, "invalid_request", "query.agent_id", query={"agent_id": CONTROL})
row("usage-microdao-long", "GET", U, None, 422, "invalid_request", "query.microdao_id", query={"microdao_id": LONG})
row("usage-group-by", "GET", U, None, 422, "invalid_request", "query.group_by", query={"group_by": "week"})
row("usage-group-by-twice", "GET", U, None, 422, "invalid_request", "query.group_by", query={"group_by": "day,day"})
row("usage-group-by-agent", "GET", U, None, 422, "invalid_request", "query.group_by", query={"group_by": "agent"})
row("usage-kind", "GET", U, None, 422, "invalid_request", "query.kind", query={"kind": "everything"})
row("usage-no-table", "GET", U, None, 503, "usage_unconfigured", None, query={"microdao_id": DAO})

COUNTED = (PROXY_PATH, V1_CHAT_PATH, V1_EMBEDDINGS_PATH, EMBEDDINGS_PATH)


@pytest.fixture
def usage_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The usage events the handler sends, each checked to serialise as the queue would."""
    from daarion_common import usage

    sent: list[Any] = []

    def capture(event: Any) -> str:
        json.loads(event.model_dump_json())
        sent.append(event)
        return "queued"

    monkeypatch.setattr(usage, "emit", capture)
    yield sent


def _raw(body: Any) -> str | None:
    if body is None or isinstance(body, str):
        return body
    return json.dumps(body, ensure_ascii=False).replace(SURROGATE, "\\ud800")


@pytest.mark.parametrize(("method", "path", "body", "headers", "query", "status", "code", "field"),
                         [pytest.param(*r[1:], id=r[0]) for r in ROWS])  # fmt: skip
def test_bad_input_is_a_clear_4xx_and_counted(
    usage_events: list[Any], method: str, path: str, body: Any, headers: dict[str, str], query: dict[str, str],
    status: int, code: str, field: str | None,
) -> None:  # fmt: skip
    from llm_proxy.app import handler
    from tests.conftest import LambdaContext

    if isinstance(body, bytes):  # not UTF-8: API Gateway hands it over base64-encoded
        event = apigw_event(method, path, base64.b64encode(body).decode(), headers)
        event["isBase64Encoded"] = True
    else:
        event = apigw_event(method, path, _raw(body), headers)
    if query:
        event["rawQueryString"] = urlencode(query)
        event["queryStringParameters"] = query
    result = handler(event, LambdaContext())

    answer = json.loads(result["body"])
    assert result["statusCode"] == status, answer
    assert answer["error"]["code"] == code, answer
    if field is not None:
        assert field in [f["field"] for f in answer["error"].get("fields") or []], answer
    if path in COUNTED:
        assert len(usage_events) == 1, usage_events
        recorded = usage_events[0]
        assert (recorded.status, recorded.error_code) == ("error", code)
        # the valid ids that were sent, or "unknown": never an invalid value copied into the ledger
        for who in (recorded.agent_id, recorded.microdao_id, recorded.channel_id or CHANNEL, recorded.model):
            assert who in (AGENT, DAO, CHANNEL, "unknown", "gpt-4.1-mini", "gpt-17", "multilingual-e5-small"), who
    else:
        assert usage_events == []


def test_identity_headers_are_utf8_and_kept_verbatim(usage_events: list[Any]) -> None:
    """Ids are opaque: a Cyrillic id in a header reaches the ledger exactly as sent, not renamed."""
    from tests.fixtures.llm_proxy import invoke_llm

    headers = {"x-agent-id": "agent:софія", "x-microdao-id": DAO, "x-channel-id": "канал:загальний"}
    out = invoke_llm("POST", V1_CHAT_PATH, chat(), {"x-internal-secret": "dev-secret-token", **headers})
    assert out.status == 200, out.text
    [event] = usage_events
    assert (event.agent_id, event.microdao_id, event.channel_id) == ("agent:софія", DAO, "канал:загальний")
    assert (event.status, event.error_code) == ("ok", None)
