"""The LLM Proxy on the whole local stack (`python -m devstack` in a subprocess, free ports): served on its
own port and through the gateway, the offline provider when no key is set, limits held in the template's
RateLimitTable on the stack's moto server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from tests.fixtures.llm_proxy import proxy_body
from tests.fixtures.stack import LocalStack, start_local_stack

pytestmark = pytest.mark.slow
SECRET = {"X-Internal-Secret": "dev-secret-token"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Empty provider variables: whatever the developer's shell holds, this stack has no provider keys.
    blank = {k: "" for k in ("OPENAI_API_KEY", "DEEPSEEK_API_KEY", "LOCAL_LLM_BASE_URL", "LLM_PROXY_CONFIG")}
    running = start_local_stack(tmp_path_factory.mktemp("llm-stack"), env=blank)
    try:
        yield running
    finally:
        running.stop()


def test_offline_answers_limits_hold_and_the_sdk_works_on_the_local_stack(stack):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    if time.time() % 60 > 40:  # fixed one-minute windows: keep the whole test inside one
        time.sleep(60 - time.time() % 60 + 0.1)
    first = httpx.post(
        f"{stack.llm_proxy}/internal/llm/proxy", json=proxy_body(agent=agent), headers=SECRET, timeout=30
    )
    assert first.status_code == 200, first.text
    assert first.json()["provider"] == "offline"
    assert first.json()["content"].startswith("[offline provider]")

    sdk = OpenAI(
        base_url=f"{stack.gateway}/v1",
        api_key="dev-secret-token",
        default_headers={"X-Agent-Id": agent, "X-Microdao-Id": "dao-42"},
        max_retries=0,
    )
    reply = sdk.chat.completions.create(model="dagi-local-8b", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content.startswith("[offline provider]")
    assert "LOCAL_LLM_BASE_URL" in reply.choices[0].message.content

    statuses = [
        httpx.post(
            f"{stack.llm_proxy}/internal/llm/proxy", json=proxy_body(agent=agent), headers=SECRET, timeout=30
        ).status_code
        for _ in range(9)
    ]
    # 10 per minute per agent (the default), counted in DynamoDB: 2 used above, 8 more pass, then 429
    # (unless the minute turned over mid-test, which lets at most one more window's worth through)
    assert statuses[:8] == [200] * 8
    limited = httpx.post(
        f"{stack.llm_proxy}/internal/llm/proxy", json=proxy_body(agent=agent), headers=SECRET, timeout=30
    )
    if statuses[8] == 200:  # the window rolled over during the burst
        pytest.skip("the minute window turned over during the burst")
    assert statuses[8] == 429 and limited.status_code == 429
    assert limited.json()["error"]["limit"] == "agent_requests_per_minute"
    assert int(limited.headers["retry-after"]) >= 1

    models = httpx.get(f"{stack.gateway}/internal/llm/models", headers=SECRET, timeout=30).json()["models"]
    assert {m["model"]: m["configured"] for m in models}["gpt-4.1-mini"] is False
