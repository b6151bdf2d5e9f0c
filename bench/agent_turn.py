"""Agent turn latency on the local stack with a zero-latency model: p50 / p95 over N turns, per step.

Starts the whole local stack (`python -m devstack`) on free ports with the LLM Proxy's `local`
provider pointed at a loopback OpenAI-compatible server that answers at once, then runs Sofia's
turn (memory query, the projects.list context tool, the tool listing, the model, storing the
exchange) N times through real HTTP. Run: `make bench` or `python -m bench agent_turn`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

TURNS = int(os.environ.get("BENCH_AGENT_TURNS", "100"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    from daarion_client import AsyncLlmProxyClient, AsyncMemoryClient, AsyncToolcoreClient
    from daarion_client.agent import Blueprint, ContextTool, IncomingMessage, Services, run_turn
    from devstack.launcher import start_local_stack
    from tests.fixtures.llm_proxy import Reply, ScriptedLLM

    model = ScriptedLLM("zero-latency", default=Reply.text("Готово.", prompt_tokens=300, completion_tokens=20))
    model.record = False
    state = Path(tempfile.mkdtemp(prefix="daarion-bench-agent-"))
    # Sofia runs every turn as agent:sofia (the id Toolcore's registry lets read projects); the proxy's
    # per-agent limits (10 calls a minute by default) are lifted for her in this stack's routing config.
    import yaml

    routing = yaml.safe_load((Path(__file__).parents[1] / "functions/llm_proxy/routing.yaml").read_text())
    routing["limits"]["agents"] = {"agent:sofia": {"agent_requests_per_minute": 1_000_000,
                                                   "agent_tokens_per_minute": 1_000_000_000}}  # fmt: skip
    (state / "routing.yaml").write_text(yaml.safe_dump(routing))
    env = {"LOCAL_LLM_BASE_URL": model.base_url, "DEVSTACK_SCHEDULE_SECONDS": "3600",
           "LLM_PROXY_CONFIG": str(state / "routing.yaml")}  # fmt: skip
    stack = start_local_stack(state, env=env)
    sofia = Blueprint(
        agent_id="agent:sofia",
        system_prompt="You are Sofia.",
        model="dagi-local-8b",
        allowed_tools=("projects.list", "task.create"),
        context_tools=(ContextTool("projects.list", {"microdao_id": "{microdao_id}", "status": "active"}),),
    )
    questions = ["Що нового в проєкті X?", "What is the status of the garden?", "Коли голосування за бюджет?"]

    async def run() -> list:
        services = Services(
            AsyncLlmProxyClient(stack.llm_proxy, timeout=30),
            AsyncMemoryClient(stack.memory, timeout=30),
            AsyncToolcoreClient(stack.toolcore, timeout=30),
        )
        results = []
        # The proxy's default microDAO limit (100 calls an hour) would throttle 100 turns: each 20 turns
        # run in a different microDAO.
        run_id = uuid.uuid4().hex[:6]
        try:
            for i in range(-5, TURNS):  # the first 5 warm up: function hosts' cold starts are not turn latency
                message = IncomingMessage(f"microdao:bench-{run_id}-{i // 20}", "general", f"{questions[i % 3]} ({i})")
                result = await run_turn(sofia, message, services, deadline_s=30)
                if i >= 0:
                    results.append(result)
        finally:
            await services.aclose()
        return results

    try:
        results = asyncio.run(run())
    finally:
        stack.stop()
        model.close()
        shutil.rmtree(state, ignore_errors=True)
    per_step: dict[str, list[float]] = defaultdict(list)
    failures = 0
    for result in results:
        failures += len(result.failures)
        for step in result.trace:
            per_step[step.name].append(step.ms)
    totals = [r.elapsed_ms for r in results]
    print(f"Agent turn on the local stack, {len(results)} turns after 5 warm-up, zero-latency model")
    print(f"  failed steps: {failures}")
    print(f"  {'step':<24}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for name, values in per_step.items():
        print(f"  {name:<24}{_pct(values, 0.5):>10.1f}{_pct(values, 0.95):>10.1f}{statistics.fmean(values):>10.1f}")
    print(f"  {'whole turn':<24}{_pct(totals, 0.5):>10.1f}{_pct(totals, 0.95):>10.1f}{statistics.fmean(totals):>10.1f}")
    print("  (memory.query, the context tool and the tool listing run concurrently; each includes the local")
    print("   gateway hop and the function host; AWS calls go to moto's server on the same 2 cores)")


if __name__ == "__main__":
    main()
