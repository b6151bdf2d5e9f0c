"""The circuit breaker's trial call is settled on every path out of it; the token bound bounds real counts;
every token-bounding parameter is capped."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from daarion_common.errors import ApiError
from daarion_contracts import tokens
from llm_proxy import service
from llm_proxy.calls import Call, Caller
from llm_proxy.chain import Candidate, ChainFailed, ChainRunner, Plan
from llm_proxy.config import RoutingConfig, get_config
from llm_proxy.providers import CircuitBreaker, ProviderAccess


def _config() -> RoutingConfig:
    data = get_config().model_dump()
    data["circuit_breaker"] = {"failure_threshold": 1, "open_seconds": 0}
    data["retry"].update(attempts_per_provider=1, backoff_base_s=0, backoff_max_s=0)
    return RoutingConfig.model_validate(data)


def _half_open(config: RoutingConfig) -> tuple[ChainRunner, Plan]:
    """openai's circuit opened by one failure; with open_seconds 0 the next call is the trial."""
    breaker = CircuitBreaker(config.circuit_breaker)
    breaker.failure("openai")
    access = ProviderAccess("openai", "http://127.0.0.1:9/v1", "sk-x", True)
    plan = Plan([Candidate("gpt-4.1-mini", config.models["gpt-4.1-mini"], access)], [])
    return ChainRunner(config.retry, breaker, sleep=lambda _s: None), plan


def _call(deadline_in: float = 30) -> Call:
    now = time.perf_counter()
    return Call("r", Caller("agent:sofia", "microdao:7"), "gpt-4.1-mini", "chat", now, now + deadline_in)


def _status_error(status: int) -> Exception:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx.Response(status, request=request, json={"error": {"message": "no"}})
    return openai.APIStatusError("no", response=response, body=None)


def _raise(exc: Exception):
    def call(*_a):
        raise exc

    return call


@pytest.mark.parametrize(
    ("send", "deadline_passed", "raises", "state"),
    [
        (lambda *_a: {"ok": True}, False, None, "closed"),  # success closes
        (_raise(_status_error(500)), False, ChainFailed, "open"),  # failure re-opens
        (_raise(openai.APIConnectionError(request=httpx.Request("POST", "http://x"))), False, ChainFailed, "open"),
        (_raise(_status_error(400)), False, ChainFailed, "closed"),  # it answered: up
        (_raise(_status_error(413)), False, ChainFailed, "closed"),
        (_raise(_status_error(422)), False, ChainFailed, "closed"),
        (lambda *_a: {"ok": True}, True, ChainFailed, "open"),  # deadline already past: released, not stuck
        (_raise(ApiError(413, "payload_too_large", "local")), False, ChainFailed, "open"),  # a local error: released
    ],
    ids=["success", "5xx", "connection", "400", "413", "422", "deadline", "local-error"],
)
def test_every_path_out_of_a_trial_call_settles_the_breaker(send, deadline_passed, raises, state):
    runner, plan = _half_open(_config())
    call = _call(-1 if deadline_passed else 30)
    if raises:
        with pytest.raises(raises):
            runner.run(call, plan, send)
    else:
        runner.run(call, plan, send)
    assert runner.breaker.state("openai") == state
    # never stuck half-open: the next call is let through (open_seconds is 0)
    assert runner.breaker.allow("openai")


def test_a_refused_fallback_extension_releases_the_trial():
    runner, plan = _half_open(_config())

    def over_budget(_candidate):
        raise ApiError(429, "rate_limited", "budget")

    with pytest.raises(ChainFailed) as failed:
        runner.run(_call(), plan, lambda *_a: {}, before=over_budget)
    assert failed.value.error.code == "rate_limited"
    assert runner.breaker.allow("openai")


# ---------------------------------------------------------------------------- token parameters
def test_every_token_parameter_is_capped_at_the_smallest_and_the_model_cap():
    model = get_config().models["gpt-4.1-mini"]  # cap 4096
    body = {"messages": [], "max_completion_tokens": 1, "max_tokens": 200_000}
    capped = service.capped_body(body, model)
    assert capped["max_tokens"] == 1 and capped["max_completion_tokens"] == 1
    assert service.capped_body({"messages": [], "max_tokens": 200_000}, model)["max_tokens"] == 4096
    assert service.capped_body({"messages": []}, model)["max_tokens"] == 4096
    bound = service.worst_case(model, {"messages": [], "n": 8, "max_tokens": 100}, 50)
    assert bound.tokens == 50 + 8 * 100


# ---------------------------------------------------------------------------- the token bound
# No tokenizer can be used here (tiktoken downloads its BPE files at run time; neither Lambda nor this
# machine can). The bound rests on a property of byte-level BPE rather than on measured counts: every token
# is a non-empty byte sequence, so a text never has more tokens than UTF-8 bytes. These check that the bound
# is the byte length for every script (never the character count, which undercounts Cyrillic, CJK, emoji).
TEXTS = [
    ("Hello, world!", 1),
    ("Привіт, як справи? Що нового в мікроДАО?", 2),
    ("你好，世界。今天天气很好。", 3),
    ("👩‍👩‍👧‍👦🎉🔥", 3),
]


@pytest.mark.parametrize(("text", "min_bytes_per_char"), TEXTS)
def test_the_text_bound_is_the_utf8_length_whatever_the_script(text, min_bytes_per_char):
    assert tokens.text_bound(text) == len(text.encode("utf-8"))
    assert tokens.text_bound(text) >= len(text) + (min_bytes_per_char > 1)


def test_every_part_of_a_request_counts():
    base = {"messages": [{"role": "user", "content": "hi"}]}
    plain = tokens.prompt_bound(base)
    tool = {"type": "function", "function": {"name": "projects__list", "parameters": {"type": "object"}}}
    assert tokens.prompt_bound({**base, "tools": [tool]}) > plain + tokens.TOOL_OVERHEAD
    assert tokens.prompt_bound({**base, "response_format": {"type": "json_schema", "json_schema": {"x": 1}}}) > plain
    call = {"id": "c1", "type": "function", "function": {"name": "t", "arguments": '{"a": "Привіт"}'}}
    with_calls = {"messages": [*base["messages"], {"role": "assistant", "content": None, "tool_calls": [call]}]}
    assert tokens.prompt_bound(with_calls) > plain + len('{"a": "Привіт"}'.encode())
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]}
    assert tokens.prompt_bound(with_image) >= plain + tokens.IMAGE_TOKENS
    assert tokens.completion_bound({"n": 3}, 100) == 300
