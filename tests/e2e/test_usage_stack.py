"""Usage end to end on the local stack: N proxy calls, some failing -> the usage API shows exactly N
requests, the right tokens, cost and errors (proxy -> usage queue -> recorder -> DynamoDB -> usage API)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.launcher import LocalStack, start_local_stack, wait_for
from tests.fixtures.llm_proxy import Reply, ScriptedLLM

pytestmark = pytest.mark.slow

SECRET = {"X-Internal-Secret": "dev-secret-token"}
PRICE_IN, PRICE_OUT = 0.40, 1.60  # gpt-4.1-mini in functions/llm_proxy/routing.yaml, USD per 1M tokens


def openai_like(body: dict[str, Any]) -> Reply:
    user = body["messages"][-1]["content"]
    if "[[fail]]" in user:
        return Reply.error(500, "scripted outage")
    return Reply.text("ok", prompt_tokens=100 + len(user), completion_tokens=20)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LocalStack, ScriptedLLM, ScriptedLLM]]:
    openai, deepseek = (
        ScriptedLLM("openai", default=openai_like),
        ScriptedLLM("deepseek", default=Reply.error(500, "down")),
    )
    state = Path(tempfile.mkdtemp(prefix="daarion-test-usage-"))
    env = {
        "OPENAI_BASE_URL": openai.base_url,
        "OPENAI_API_KEY": f"sk-test-{uuid.uuid4().hex}",
        "DEEPSEEK_BASE_URL": deepseek.base_url,
        "DEEPSEEK_API_KEY": f"sk-test-{uuid.uuid4().hex}",
        "DEVSTACK_SCHEDULE_SECONDS": "3600",
    }
    running = start_local_stack(state, env=env)
    try:
        yield running, openai, deepseek
    finally:
        running.stop()
        openai.close()
        deepseek.close()
        shutil.rmtree(state, ignore_errors=True)


def test_n_calls_some_failing_are_all_in_the_usage_api(stack):
    running, _, _ = stack
    agent, dao = f"agent-{uuid.uuid4().hex[:6]}", f"dao-{uuid.uuid4().hex[:6]}"
    prompts = [f"question {i}" + (" [[fail]]" if i % 4 == 3 else "") for i in range(8)]
    statuses = []
    for prompt in prompts:
        response = httpx.post(
            f"{running.llm_proxy}/internal/llm/proxy", headers=SECRET, timeout=60,
            json={"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": prompt}], "max_tokens": 64,
                  "metadata": {"agent_id": agent, "microdao_id": dao, "channel_id": "general"}},
        )  # fmt: skip
        statuses.append(response.status_code)
    ok = [p for p, s in zip(prompts, statuses, strict=True) if s == 200]
    assert statuses.count(502) == 2 and len(ok) == 6

    def usage() -> dict[str, Any] | None:
        body = httpx.get(
            f"{running.llm_proxy}/internal/llm/usage", headers=SECRET, timeout=10,
            params={"microdao_id": dao, "group_by": "agent"},
        ).json()  # fmt: skip
        return body if body["totals"]["requests"] >= len(prompts) else None

    body = wait_for(usage, 90, "every call to reach the usage ledger")
    totals = body["totals"]
    prompt_tokens = sum(100 + len(p) for p in ok)
    assert totals["requests"] == 8 and totals["errors"] == 2
    assert totals["prompt_tokens"] == prompt_tokens and totals["completion_tokens"] == 20 * len(ok)
    assert totals["cost_usd"] == pytest.approx((prompt_tokens * PRICE_IN + 20 * len(ok) * PRICE_OUT) / 1e6, rel=1e-6)
    assert [s["key"]["agent"] for s in body["series"]] == [agent]
    by_model = httpx.get(
        f"{running.llm_proxy}/internal/llm/usage",
        headers=SECRET,
        params={"agent_id": agent, "microdao_id": dao, "group_by": "model"},
    ).json()
    assert {s["key"]["model"]: s["requests"] for s in by_model["series"]} == {"gpt-4.1-mini": 8}
