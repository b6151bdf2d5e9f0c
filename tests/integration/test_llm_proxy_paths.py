"""Context windows and paths on the LLM Proxy, against loopback OpenAI-compatible upstreams through the real
`openai` SDK: a request that cannot fit is a 400 `context_length_exceeded` naming the window and the estimate,
or goes to a fallback with a larger window; a model that may take longer than the API path's deadline is
served on the long path only; a caller's own wait bounds the call."""

from __future__ import annotations

import json
import os
from pathlib import Path

import openai
import pytest

from daarion_contracts.tokens import prompt_bound
from tests.fixtures.llm_proxy import Reply, invoke_llm, proxy_body, write_config

PROXY = "/internal/llm/proxy"
LONG_TEXT = "Звіт комітету про сад і бюджет мікроДАО. " * 60  # ~4,700 UTF-8 bytes: past a 2,048-token window


@pytest.fixture
def local(upstreams, scripted_llm, monkeypatch):
    """dagi-local-8b (window 2,048) on its own loopback server."""
    server = scripted_llm("local")
    monkeypatch.setenv("LOCAL_LLM_BASE_URL", server.base_url)
    return server


def _reconfigure(monkeypatch, tmp_path, change) -> None:
    config = json.loads(Path(os.environ["LLM_PROXY_CONFIG"]).read_text())
    change(config)
    write_config(tmp_path, config, monkeypatch)


def _sdk(bridge) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{bridge.url}/v1",
        api_key="dev-secret-token",
        default_headers={"X-Agent-Id": "agent:sofia", "X-Microdao-Id": "microdao:7"},
        max_retries=0,
    )


# ---------------------------------------------------------------------------- context windows
def test_an_oversized_request_is_context_length_exceeded_naming_the_window_and_the_estimate(
    local, llm_bridge, monkeypatch, tmp_path
):
    _reconfigure(monkeypatch, tmp_path, lambda c: c["models"]["dagi-local-8b"].update(fallbacks=[]))
    messages = [{"role": "user", "content": LONG_TEXT}]
    with pytest.raises(openai.BadRequestError) as raised:
        _sdk(llm_bridge).chat.completions.create(model="dagi-local-8b", messages=messages, max_tokens=256)
    error = raised.value
    assert error.status_code == 400 and error.code == "context_length_exceeded"
    estimate = prompt_bound({"messages": messages}) + 256
    body = error.body
    assert (body["context_window"], body["estimated_tokens"]) == (2048, estimate)
    assert "context window of 2,048 tokens" in body["message"] and f"{estimate:,} tokens" in body["message"]
    assert local.chat_requests() == []  # refused before the model was called


def test_a_request_that_fits_a_fallbacks_larger_window_is_served_by_it(local, upstreams, llm_bridge):
    upstreams.openai.script(Reply.text("from the larger window"))
    reply = _sdk(llm_bridge).chat.completions.with_raw_response.create(
        model="dagi-local-8b", messages=[{"role": "user", "content": LONG_TEXT}], max_tokens=256
    )
    assert reply.parse().choices[0].message.content == "from the larger window"
    assert reply.headers["x-llm-provider"] == "openai" and reply.headers["x-llm-fallback"] == "true"
    assert local.chat_requests() == []  # skipped: its 2,048-token window cannot hold the request
    assert len(upstreams.openai.chat_requests()) == 1


def test_when_no_fallback_fits_either_each_window_is_named(local, monkeypatch, tmp_path):
    _reconfigure(monkeypatch, tmp_path, lambda c: c["models"]["gpt-4.1-mini"].update(context_window=4096))
    out = invoke_llm("POST", PROXY, proxy_body("dagi-local-8b", messages=[{"role": "user", "content": LONG_TEXT}]))
    assert out.status == 400, out.text
    error = out.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["context_window"] == 2048
    assert [(p["model"], p["error"].split(" <")[0]) for p in error["providers"]] == [
        ("dagi-local-8b", "context window 2,048"),
        ("gpt-4.1-mini", "context window 4,096"),
    ]


def test_without_max_tokens_the_completion_cap_is_what_the_window_leaves(local, llm_bridge):
    messages = [{"role": "user", "content": "Привіт! " * 100}]
    _sdk(llm_bridge).chat.completions.create(model="dagi-local-8b", messages=messages)
    sent = local.chat_requests()[-1].body
    assert sent["max_tokens"] == 2048 - prompt_bound({"messages": messages})


def test_the_model_listings_state_each_context_window(upstreams, llm_bridge):
    cards = {m.id: m for m in _sdk(llm_bridge).models.list().data}
    assert cards["gpt-4.1-mini"].context_window == 1_047_576  # type: ignore[attr-defined]
    assert cards["dagi-local-8b"].context_window == 2048  # type: ignore[attr-defined]
    assert not hasattr(cards["multilingual-e5-small"], "context_window")  # embeddings: not stated
    catalogue = {m["model"]: m for m in invoke_llm("GET", "/internal/llm/models").json()["models"]}
    assert catalogue["gpt-4"]["context_window"] == 8192 and catalogue["gpt-4"]["long_path_only"] is True
    assert catalogue["gpt-4.1-mini"]["long_path_only"] is False


# ---------------------------------------------------------------------------- paths
def test_a_long_path_model_on_the_api_path_is_a_clear_4xx(upstreams, llm_bridge):
    with pytest.raises(openai.BadRequestError) as raised:
        _sdk(llm_bridge).chat.completions.create(model="deepseek-r1", messages=[{"role": "user", "content": "?"}])
    assert raised.value.code == "long_path_required"
    assert "long path" in raised.value.body["message"] and "420 s" in raised.value.body["message"]
    assert upstreams.deepseek.chat_requests() == []


def test_a_long_path_model_is_served_through_a_function_url(upstreams):
    """The long path is told by the event: a Function URL's domain is <id>.lambda-url.<region>.on.aws."""
    upstreams.deepseek.script(Reply.text("thought it through"))
    domain = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-central-1.on.aws"
    out = invoke_llm("POST", PROXY, proxy_body("deepseek-r1"), {"host": domain}, domain=domain)
    assert out.status == 200, out.text
    assert (out.json()["provider"], out.json()["model_resolved"]) == ("deepseek", "deepseek-reasoner")


def test_a_long_path_fallback_is_skipped_on_the_api_path_and_said_so(upstreams, monkeypatch, tmp_path):
    _reconfigure(
        monkeypatch, tmp_path, lambda c: c["models"]["gpt-4.1-mini"].update(fallbacks=["gpt-4", "deepseek-chat"])
    )
    upstreams.openai.default = Reply.error(503, "overloaded")
    upstreams.deepseek.default = Reply.error(503, "overloaded")
    out = invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini"))
    assert out.status == 502
    reasons = {p["model"]: p["error"] for p in out.json()["error"]["providers"]}
    assert reasons["gpt-4"] == "served on the long path only"
    assert len(upstreams.openai.chat_requests()) == 2  # gpt-4.1-mini twice; gpt-4 (openai too) never


def test_the_callers_own_wait_bounds_the_call(upstreams, monkeypatch, tmp_path):
    """X-Request-Timeout-Ms (the Memory Orchestrator sends its wait): the proxy answers its 504 within it."""
    upstreams.openai.default = Reply.slow(5.0)
    upstreams.deepseek.default = Reply.slow(5.0)
    out = invoke_llm("POST", PROXY, proxy_body(), {"x-request-timeout-ms": "1500"})
    assert out.status == 504 and out.json()["error"]["code"] == "upstream_timeout"
    bad = invoke_llm("POST", PROXY, proxy_body(), {"x-request-timeout-ms": "soon"})
    assert bad.status == 422 and bad.json()["error"]["fields"][0]["field"] == "header.X-Request-Timeout-Ms"
