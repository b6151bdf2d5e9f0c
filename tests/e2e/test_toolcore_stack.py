"""End to end over HTTP through the local stack: Toolcore behind the local API gateway calls the demo
projects service (allowlisted loopback target, token injected as the projects_api secret), stores
idempotency records in the stack's moto, and serves MCP to the official SDK client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid

import httpx
import httpx2
import pytest

from devstack.launcher import wait_for

pytestmark = pytest.mark.slow

HEADERS = {"X-Internal-Secret": "dev-secret-token"}


def call(stack, body: dict) -> dict:
    response = httpx.post(f"{stack.toolcore}/internal/tools/call", json=body, headers=HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_projects_list_reaches_the_demo_target(local_stack):
    out = call(local_stack, {"tool_id": "projects.list", "agent_id": "agent:sofia", "microdao_id": "microdao:42",
                             "args": {"microdao_id": "microdao:42"}})  # fmt: skip
    assert out["ok"] is True, out
    assert out["result"]["demo"] is True
    assert {p["id"] for p in out["result"]["projects"]} == {"demo-proj-1", "demo-proj-2"}  # active only


def test_another_microdaos_projects_are_refused(local_stack):
    out = call(local_stack, {"tool_id": "projects.list", "agent_id": "agent:sofia", "microdao_id": "microdao:42",
                             "args": {"microdao_id": "microdao:7"}})  # fmt: skip
    assert out["error"]["code"] == "permission_denied"


def test_task_create_is_idempotent_by_key_through_the_stack(local_stack):
    body = {"tool_id": "task.create", "agent_id": "agent:sofia", "microdao_id": "microdao:42",
            "args": {"microdao_id": "microdao:42", "project_id": "demo-proj-1", "title": "Water the garden"},
            "idempotency_key": f"e2e-{uuid.uuid4().hex}"}  # fmt: skip
    first, second = call(local_stack, body), call(local_stack, body)
    assert first["ok"] is True, first
    assert first["result"]["task"]["title"] == "Water the garden"
    assert first["result"]["task"]["created_by"] == "agent:sofia"
    assert second["result"] == first["result"] and second["idempotent_replay"] is True


def test_an_agent_outside_the_allowlist_cannot_create_tasks(local_stack):
    body = {"tool_id": "task.create", "agent_id": "agent:intruder", "microdao_id": "microdao:42",
            "args": {"microdao_id": "microdao:42", "project_id": "demo-proj-1", "title": "Sneaky"}}  # fmt: skip
    out = call(local_stack, body)
    assert out["error"]["code"] == "permission_denied"
    response = httpx.get(
        f"{local_stack.toolcore}/internal/tools",
        params={"agent_id": "agent:intruder", "microdao_id": "microdao:42"},
        headers=HEADERS,
        timeout=30,
    )
    assert {t["id"] for t in response.json()["tools"]} == {"time.now"}


def test_listing_in_openai_format_through_the_gateway(local_stack):
    response = httpx.get(
        f"{local_stack.gateway}/internal/tools",
        params={"agent_id": "agent:sofia", "microdao_id": "microdao:42", "format": "openai"},
        headers=HEADERS,
        timeout=30,
    )
    assert response.status_code == 200
    names = {t["function"]["name"] for t in response.json()["tools"]}
    assert {"projects__list", "task__create", "followup__create"} <= names


def test_mcp_sdk_client_through_the_stack(local_stack):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def work():
        headers = {**HEADERS, "X-Agent-Id": "agent:sofia", "X-Microdao-Id": "microdao:42"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{local_stack.gateway}/mcp", http_client=http)) as client,
        ):
            tools = await client.list_tools()
            result = await client.call_tool("projects.list", {"microdao_id": "microdao:42", "status": "all"})
            return tools, result

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        tools, result = pool.submit(asyncio.run, work()).result()
    assert "projects.list" in {t.name for t in tools.tools}
    assert result.is_error is False
    assert len(result.structured_content["projects"]) == 3


def test_a_replay_is_counted_once_in_the_usage_api(local_stack):
    """One logical task.create sent twice with one idempotency key: the usage API shows one tool call
    (and one replay), through Toolcore -> usage queue -> recorder -> DynamoDB -> the usage API."""
    dao = f"microdao:replay-{uuid.uuid4().hex[:8]}"
    body = {"tool_id": "task.create", "agent_id": "agent:sofia", "microdao_id": dao,
            "args": {"microdao_id": dao, "project_id": "demo-proj-1", "title": "Once"},
            "idempotency_key": f"e2e-{uuid.uuid4().hex}"}  # fmt: skip
    first, second = call(local_stack, body), call(local_stack, body)
    assert first["ok"] is True and second["idempotent_replay"] is True

    def usage() -> dict | None:
        answer = httpx.get(
            f"{local_stack.llm_proxy}/internal/llm/usage",
            params={"microdao_id": dao, "kind": "tool", "group_by": "model"},
            headers=HEADERS,
            timeout=10,
        ).json()
        totals = answer["totals"]
        return answer if totals.get("tool_calls", 0) + totals.get("tool_replays", 0) >= 2 else None

    answer = wait_for(usage, 60, "both events to reach the usage ledger")
    assert answer["totals"]["tool_calls"] == 1 and answer["totals"]["tool_replays"] == 1
    assert [s["tool_calls"] for s in answer["series"]] == [1]  # one series: tool:task.create


def test_the_demo_shows_sofia_using_projects_list_and_per_agent_mcp_listings(local_stack, capsys, monkeypatch):
    """What `make demo` prints, on the shared stack: each agent's MCP listing holds only what it may call,
    and Sofia's turn (agent:sofia in microdao:7) reads projects.list."""
    from ops import demo

    lines = demo.mcp_listings(local_stack.toolcore, "dev-secret-token")
    listed = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[2:]}
    assert listed == {
        "agent:sofia": "projects.list, task.create, followup.create, time.now",
        "agent:cto": "projects.list, time.now",
        "agent:guest": "time.now",
    }
    monkeypatch.setattr(demo, "QUESTIONS", demo.QUESTIONS[:1])  # one turn is enough here
    (result,) = asyncio.run(
        demo.run(local_stack.llm_proxy, local_stack.memory, local_stack.toolcore, "dev-secret-token")
    )
    projects = [s for s in result.trace if s.name == "tool:projects.list"]
    assert projects and projects[0].status == "ok", result.trace
    assert "tool:projects.list     ok" in capsys.readouterr().out
