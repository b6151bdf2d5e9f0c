"""The LLM Proxy's long path on the whole local stack: its Function URL with response streaming, served by the
image's own entry point (the streaming runtime) against a local Runtime API, driven by the real `openai` SDK.

The upstream is a loopback OpenAI-compatible server that streams one token every 100 ms. That the stream is
relayed chunk by chunk is shown by the order of events — the client's first token is recorded before the
upstream records sending its last one — never by a clock (the times are printed, not asserted).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.fixtures.llm_proxy import Reply, ScriptedLLM
from tests.fixtures.stack import LocalStack, temporary_local_stack, wait_for

pytestmark = pytest.mark.slow
SECRET = {"X-Internal-Secret": "dev-secret-token"}
DAO = "microdao:long"
LIMITED = "agent:limited"
LIMIT = 3
TOKENS = [f"tok{i} " for i in range(12)]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM("openai", Reply.text("fast answer", completion_tokens=3))
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(upstream: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    from llm_proxy.config import DEFAULT_PATH

    config = yaml.safe_load(DEFAULT_PATH.read_text())
    config["retry"].update(backoff_base_s=0.0, backoff_max_s=0.0, attempts_per_provider=1)
    config["limits"]["agents"] = {DAO: {LIMITED: {"agent_requests_per_minute": LIMIT}}}
    config_path = tmp_path_factory.mktemp("long-path") / "routing.json"
    config_path.write_text(json.dumps(config))
    env = {
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": "sk-test-long-path",
        "DEEPSEEK_API_KEY": "",
        "LOCAL_LLM_BASE_URL": "",
        "LLM_PROXY_CONFIG": str(config_path),
        "DEVSTACK_MAX_CONTAINERS": "2",
    }
    with temporary_local_stack("daarion-test-long-path-", env=env) as running:
        yield running


def sdk(stack: LocalStack, agent: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.llm_stream}/v1",
        api_key="dev-secret-token",
        default_headers={"X-Agent-Id": agent, "X-Microdao-Id": DAO},
        max_retries=0,
        timeout=60,
    )


def usage_totals(stack: LocalStack, agent: str, at_least: int) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        body = httpx.get(
            f"{stack.llm_proxy}/internal/llm/usage", headers=SECRET, timeout=10,
            params={"agent_id": agent, "microdao_id": DAO},
        ).json()  # fmt: skip
        return body["totals"] if body["totals"]["requests"] >= at_least else None

    return wait_for(read, 90, f"{at_least} usage event(s) of {agent} in the ledger")


def raw_events(stack: LocalStack, agent: str) -> list[dict[str, Any]]:
    """The usage table's raw events of ``agent`` (a test may scan; the service never does)."""
    dynamodb = stack.client("dynamodb")
    table = next(t for t in dynamodb.list_tables()["TableNames"] if "UsageTable" in t)
    items = dynamodb.scan(TableName=table, FilterExpression="sk = :e", ExpressionAttributeValues={":e": {"S": "EVENT"}})
    events = [json.loads(item["body"]["S"]) for item in items["Items"]]
    return [e for e in events if e.get("agent_id") == agent]


def test_tokens_reach_the_sdk_while_the_upstream_is_still_generating(stack: LocalStack, upstream: ScriptedLLM):
    agent = f"agent:stream-{uuid.uuid4().hex[:6]}"
    upstream.timeline = timeline = []
    upstream.script(Reply.slow_stream(TOKENS, 0.1, prompt_tokens=9))
    began = time.perf_counter()
    first_at = None
    received: list[str] = []
    usage = None
    stream = sdk(stack, agent).chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                if first_at is None:
                    first_at = time.perf_counter() - began
                    timeline.append(("client", "first"))
                received.append(choice.delta.content)
    total = time.perf_counter() - began
    upstream.timeline = None
    print(f"\nlong path, {len(TOKENS)} tokens every 100 ms: time to first token {first_at:.3f} s, total {total:.3f} s")

    assert "".join(received) == "".join(TOKENS)
    first = timeline.index(("client", "first"))
    last = timeline.index(("upstream", len(TOKENS)))
    assert first < last, f"the client's first token came only after the upstream's last: {timeline}"
    assert usage is not None and usage.completion_tokens == len(TOKENS) and usage.prompt_tokens == 9

    totals = usage_totals(stack, agent, 1)
    time.sleep(2)  # room for a second, duplicate event to arrive (there must be none)
    totals = usage_totals(stack, agent, 1)
    assert totals["requests"] == 1 and totals["errors"] == 0 and totals["streamed"] == 1
    assert totals["completion_tokens"] == len(TOKENS) and totals["prompt_tokens"] == 9
    (event,) = raw_events(stack, agent)
    assert event["status"] == "ok" and event["streamed"] is True


def test_a_stream_cut_by_the_upstream_is_told_to_the_client_and_recorded_failed(stack: LocalStack, upstream):
    agent = f"agent:cut-{uuid.uuid4().hex[:6]}"
    upstream.script(Reply(content="this answer never ends", pieces=["this ", "answer ", "never ", "ends"],
                          token_interval_s=0.05, break_stream_after=3))  # fmt: skip
    received = []
    with pytest.raises(openai.APIError) as failure:
        stream = sdk(stack, agent).chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "go"}], stream=True
        )
        for chunk in stream:
            received += [c.delta.content for c in chunk.choices if c.delta.content]
    assert received == ["this ", "answer "]  # what arrived before the cut reached the caller
    assert "interrupted" in str(failure.value)
    totals = usage_totals(stack, agent, 1)
    assert totals["requests"] == 1 and totals["errors"] == 1
    (event,) = raw_events(stack, agent)
    assert event["status"] == "error" and event["error_code"] == "stream_interrupted"


def test_limits_are_exact_on_the_long_path(stack: LocalStack):
    if time.time() % 60 > 45:  # fixed one-minute windows: keep the burst inside one
        time.sleep(60 - time.time() % 60 + 0.2)
    client = sdk(stack, LIMITED)
    outcomes = []
    for _ in range(LIMIT + 2):
        try:
            stream = client.chat.completions.create(
                model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            outcomes.append(200)
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "rate_limited" and exc.body["limit"] == "agent_requests_per_minute"
            outcomes.append(429)
    assert outcomes == [200] * LIMIT + [429, 429]
    totals = usage_totals(stack, LIMITED, LIMIT + 2)
    assert totals["requests"] == LIMIT + 2 and totals["errors"] == 2  # the refused two counted as errors
    assert totals["streamed"] == LIMIT + 2  # every one asked for a stream (the refused ones too)


def test_the_client_streams_text_and_tool_call_deltas_then_usage_and_cost(stack, upstream, monkeypatch):
    import asyncio

    from daarion_client import (
        AsyncLlmProxyClient,
        LlmProxyClient,
        StreamDone,
        StreamInterrupted,
        TextDelta,
        ToolCallDelta,
    )

    monkeypatch.setenv("LLM_PROXY_STREAM_URL", stack.llm_stream)
    agent = f"agent:client-{uuid.uuid4().hex[:6]}"
    caller = {"agent_id": agent, "microdao_id": DAO, "channel_id": "general"}
    messages = [{"role": "user", "content": "plan"}]
    upstream.script(Reply.slow_stream(["Let ", "me ", "check."], 0.02, prompt_tokens=40))
    with LlmProxyClient(stack.llm_proxy, timeout=30) as client:
        events = list(client.chat_stream("gpt-4.1-mini", messages, **caller))
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert texts == ["Let ", "me ", "check."] and isinstance(done, StreamDone)
    assert done.usage is not None and (done.usage.prompt_tokens, done.usage.completion_tokens) == (40, 3)
    assert done.cost_usd == pytest.approx((40 * 0.40 + 3 * 1.60) / 1e6)  # gpt-4.1-mini's prices, as buffered
    assert done.provider == "openai" and done.finish_reason == "stop"

    upstream.script(Reply.tool_call("projects__list", {"microdao_id": DAO}, prompt_tokens=30, completion_tokens=12))
    upstream.script(Reply(content="cut here", pieces=["cut ", "here"], break_stream_after=2))

    async def run() -> tuple[list[Any], BaseException | None]:
        async with AsyncLlmProxyClient(stack.llm_proxy, timeout=30) as client:
            first = [e async for e in client.chat_stream("gpt-4.1-mini", messages, **caller)]
            try:
                async for _ in client.chat_stream("gpt-4.1-mini", messages, **caller):
                    pass
            except StreamInterrupted as exc:
                return first, exc
        return first, None

    first, interrupted = asyncio.run(run())
    calls = [e for e in first if isinstance(e, ToolCallDelta)]
    assert calls[0].name == "projects__list" and json.loads("".join(c.arguments for c in calls)) == {"microdao_id": DAO}
    assert isinstance(first[-1], StreamDone) and first[-1].finish_reason == "tool_calls"
    assert isinstance(interrupted, StreamInterrupted) and interrupted.code == "stream_interrupted"
