"""`make demo`: Sofia answers a Ukrainian and an English question on the local stack.

Seeds a demo microDAO (knowledge-base documents, past conversations; the demo projects service
is part of the local stack), then runs the agent turn (`daarion_client.agent.run_turn`) and prints
the reply and the trace of every step. Uses the stack already running at LLM_PROXY_URL /
AGENT_MEMORY_URL / TOOLCORE_URL if it answers, otherwise starts one for the demo and stops it after.

Offline (no provider configured) the LLM Proxy's offline provider answers and says so; with
OPENAI_API_KEY, DEEPSEEK_API_KEY or LOCAL_LLM_BASE_URL set, a real model answers: Sofia's model is the
first chat model of the proxy's catalogue whose provider is configured (gpt-4.1-mini, deepseek-chat,
dagi-local-8b, ... in that order of preference), or DEMO_MODEL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

from daarion_client.agent import Blueprint, ContextTool, IncomingMessage, Services, TurnResult, run_turn

MICRODAO = "microdao:7"
CHANNEL = "general"

SOFIA = Blueprint(
    agent_id="agent:sofia",
    system_prompt=(
        "You are Sofia, the assistant of a DAARION microDAO. Answer in the language of the question, "
        "briefly, using what you remember and the live project data you are given. If something you "
        "need is unavailable, say so instead of guessing."
    ),
    model="gpt-4.1-mini",
    allowed_tools=("projects.list", "task.create", "followup.create"),
    context_tools=(ContextTool("projects.list", {"microdao_id": "{microdao_id}", "status": "active"}),),
)

KB_DOCUMENTS = [
    {
        "document_id": "demo-roadmap-x",
        "title": "Проєкт X: дорожня карта",
        "source": "demo",
        "markdown": (
            "# Проєкт X\n\n## Що нового\nУ листопаді завершено пілот громадського городу: 40 учасників, "
            "перший урожай передано до продуктового банку.\n\n## Наступні кроки\nДо кінця грудня — звіт "
            "скарбниці та голосування за бюджет на весну.\n"
        ),
    },
    {
        "document_id": "demo-treasury-policy",
        "title": "Treasury policy",
        "source": "demo",
        "markdown": (
            "# Treasury policy\n\nSpending above 500 USDC needs a vote of the microDAO. The treasury report "
            "is published every quarter; the next one is due in December.\n"
        ),
    },
]

PAST_CONVERSATIONS = [
    {
        "user_message": "Коли голосування за бюджет?",
        "agent_reply": "Голосування за весняний бюджет — наприкінці грудня.",
    },
    {
        "user_message": "Who leads the community garden?",
        "agent_reply": "Olena coordinates the community garden project.",
    },
]

QUESTIONS = ["Sofia, що нового в проєкті X?", "Sofia, what is the status of the community garden project?"]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def seed(memory_url: str, secret: str) -> None:
    headers = {"X-Internal-Secret": secret}
    with httpx.Client(base_url=memory_url, headers=headers, timeout=30) as http:
        for doc in KB_DOCUMENTS:
            http.post("/internal/agent-memory/kb/documents", json={"microdao_id": MICRODAO, **doc}).raise_for_status()
        for exchange in PAST_CONVERSATIONS:
            body = {"agent_id": SOFIA.agent_id, "microdao_id": MICRODAO, "channel_id": CHANNEL, "kind": "conversation"}
            http.post("/internal/agent-memory/store", json={**body, "content": exchange}).raise_for_status()


LISTED_AGENTS = (SOFIA.agent_id, "agent:cto", "agent:guest")


def mcp_listings(tools_url: str, secret: str) -> list[str]:
    """What each agent sees over MCP (tools/list): only the tools it may call in the microDAO."""
    lines = ["", "MCP tools/list per agent (least privilege: each sees only what it may call):"]
    with httpx.Client(base_url=tools_url, timeout=30) as http:
        for agent in LISTED_AGENTS:
            headers = {"X-Internal-Secret": secret, "X-Agent-Id": agent, "X-Microdao-Id": MICRODAO}
            answer = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
            answer.raise_for_status()
            names = [t["name"] for t in answer.json()["result"]["tools"]]
            lines.append(f"  {agent:<14} {', '.join(names) or '(none)'}")
    return lines


def render(question: str, result: TurnResult) -> str:
    lines = [f"\n>>> {question}", f"Sofia: {result.reply}", "", "trace:"]
    for step in result.trace:
        shown = dict(step.detail)
        if "items" in shown:  # memory.query: kind and score of each item, not the ids
            shown["items"] = " ".join(f"{i['kind']}:{i['score']:.2f}" for i in shown["items"]) or "none"
        detail = ", ".join(f"{k}={v}" for k, v in shown.items() if v not in (None, [], {}))
        error = f"  ERROR {step.error}" if step.error else ""
        lines.append(f"  {step.name:<22} {step.status:<8} {step.ms:7.1f} ms  {detail}{error}")
    lines.append(
        f"  total {result.elapsed_ms:.0f} ms, tokens {result.prompt_tokens}+{result.completion_tokens}, "
        f"cost ${result.cost_usd:.6f}, stored as {result.stored_memory_id}"
    )
    return "\n".join(lines)


PREFERRED_MODELS = ("gpt-4.1-mini", "deepseek-chat", "dagi-local-8b", "gpt-4", "deepseek-r1")


def choose_model(llm_url: str, secret: str) -> tuple[str, str]:
    """(Sofia's model, why): DEMO_MODEL, else the first preferred chat model whose provider is configured."""
    if os.environ.get("DEMO_MODEL"):
        return os.environ["DEMO_MODEL"], "DEMO_MODEL"
    from daarion_client import LlmProxyClient

    with LlmProxyClient(llm_url, secret=secret, timeout=30) as llm:
        catalogue = llm.models().models
    # the demo's turn goes through the API path: models served on the long path only are not candidates
    configured = [m.model for m in catalogue if m.kind == "chat" and m.configured and not m.long_path_only]
    ranked = sorted(configured, key=lambda m: PREFERRED_MODELS.index(m) if m in PREFERRED_MODELS else 99)
    if ranked:
        provider = next(m.provider for m in catalogue if m.model == ranked[0])
        return ranked[0], f"the first model whose provider ({provider}) is configured"
    return SOFIA.model, "no provider is configured: the LLM Proxy's offline provider answers"


async def run(llm_url: str, memory_url: str, tools_url: str, secret: str) -> list[TurnResult]:
    from daarion_client import AsyncLlmProxyClient, AsyncMemoryClient, AsyncToolcoreClient

    services = Services(
        AsyncLlmProxyClient(llm_url, secret=secret, timeout=30),
        AsyncMemoryClient(memory_url, secret=secret),
        AsyncToolcoreClient(tools_url, secret=secret),
    )
    model, why = await asyncio.to_thread(choose_model, llm_url, secret)
    print(f"Sofia's model: {model} ({why})", flush=True)
    sofia = dataclasses.replace(SOFIA, model=model)
    results = []
    try:
        for question in QUESTIONS:
            message = IncomingMessage(microdao_id=MICRODAO, channel_id=CHANNEL, text=question)
            result = await run_turn(sofia, message, services, deadline_s=float(os.environ.get("DEMO_DEADLINE_S", "5")))
            print(render(question, result), flush=True)
            results.append(result)
    finally:
        await services.aclose()
    return results


def main() -> None:
    secret = os.environ.get("INTERNAL_SECRET", "dev-secret-token")
    urls = [os.environ.get(v, d) for v, d in (("LLM_PROXY_URL", "http://127.0.0.1:7007"),
                                               ("AGENT_MEMORY_URL", "http://127.0.0.1:7008"),
                                               ("TOOLCORE_URL", "http://127.0.0.1:7009"))]  # fmt: skip
    stack = None
    state = None
    if not all(_healthy(u) for u in urls):
        from devstack.launcher import start_local_stack

        print("No local stack is running: starting one for the demo (this takes a few seconds) ...", flush=True)
        state = Path(tempfile.mkdtemp(prefix="daarion-demo-"))
        stack = start_local_stack(state)
        urls = [stack.llm_proxy, stack.memory, stack.toolcore]
    try:
        seed(urls[1], secret)
        print(
            f"Seeded microDAO {MICRODAO}: {len(KB_DOCUMENTS)} documents, {len(PAST_CONVERSATIONS)} past conversations"
        )
        print("\n".join(mcp_listings(urls[2], secret)), flush=True)
        asyncio.run(run(*urls, secret))
    finally:
        if stack is not None:
            stack.stop()
        if state is not None:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
