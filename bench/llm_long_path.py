"""Time to first token and total through the LLM Proxy's long path, beside calling the upstream directly.

A local stack (`python -m devstack` on free ports) with its long path — the Function URL with response
streaming, served by the image's entry point (daarion_common.lambda_streaming) against a local Runtime
API — in front of a loopback OpenAI-compatible upstream that streams one token every 100 ms
(BENCH_STREAM_TOKENS tokens, default 20). Each round streams the same answer with the `openai` SDK twice,
alternating: through the long path (limiter, usage event, the relay) and straight from the upstream.
Printed: median and p95 of time to first token and of total time, and the difference (what the long path
adds). For contrast, the buffered path (the HTTP API's gateway, Mangum) is timed once: its first token
arrives with the last.

Run: `make bench` or `python -m bench llm_long_path` (BENCH_STREAM_ROUNDS, default 10).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROUNDS = int(os.environ.get("BENCH_STREAM_ROUNDS", "10"))
TOKENS = int(os.environ.get("BENCH_STREAM_TOKENS", "20"))
INTERVAL_S = 0.1


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _stream(client: Any, model: str) -> tuple[float, float, int]:
    began = time.perf_counter()
    first = None
    pieces = 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "count"}], stream=True, max_tokens=64
    )
    for chunk in stream:
        if any(c.delta.content for c in chunk.choices):
            pieces += 1
            if first is None:
                first = time.perf_counter() - began
    total = time.perf_counter() - began
    return first if first is not None else total, total, pieces


def main() -> None:
    import openai
    import yaml

    from devstack.launcher import start_local_stack
    from tests.fixtures.llm_proxy import Reply, ScriptedLLM

    tokens = [f"t{i} " for i in range(TOKENS)]
    upstream = ScriptedLLM("local", default=Reply.slow_stream(tokens, INTERVAL_S, prompt_tokens=12))
    upstream.record = False
    state = Path(tempfile.mkdtemp(prefix="daarion-bench-long-"))
    routing = yaml.safe_load((Path(__file__).parents[1] / "functions/llm_proxy/routing.yaml").read_text())
    routing["limits"]["defaults"].update(agent_requests_per_minute=1_000_000)
    (state / "routing.yaml").write_text(yaml.safe_dump(routing))
    env = {
        "LOCAL_LLM_BASE_URL": upstream.base_url,
        "LLM_PROXY_CONFIG": str(state / "routing.yaml"),
        "DEVSTACK_SCHEDULE_SECONDS": "3600",
        "DEVSTACK_MAX_CONTAINERS": "1",
    }
    stack = start_local_stack(state, env=env)
    headers = {"X-Agent-Id": "agent:bench", "X-Microdao-Id": "microdao:bench"}
    long_path = openai.OpenAI(base_url=f"{stack.llm_stream}/v1", api_key="dev-secret-token", default_headers=headers,
                              max_retries=0, timeout=120)  # fmt: skip
    buffered = openai.OpenAI(base_url=f"{stack.gateway}/v1", api_key="dev-secret-token", default_headers=headers,
                             max_retries=0, timeout=120)  # fmt: skip
    direct = openai.OpenAI(base_url=upstream.base_url, api_key="none", max_retries=0, timeout=120)
    try:
        _stream(long_path, "dagi-local-8b")  # warm: the function's first call imports the provider SDK
        _stream(buffered, "dagi-local-8b")
        results: dict[str, list[tuple[float, float, int]]] = {"long path": [], "direct": []}
        for _ in range(ROUNDS):
            results["long path"].append(_stream(long_path, "dagi-local-8b"))
            results["direct"].append(_stream(direct, "llama3.1:8b"))
        gateway = _stream(buffered, "dagi-local-8b")
    finally:
        stack.stop()
        upstream.close()
        shutil.rmtree(state, ignore_errors=True)

    print(f"upstream: {TOKENS} tokens, one every {INTERVAL_S * 1000:.0f} ms (loopback); {ROUNDS} rounds, alternating")
    print(f"{'':<34}{'first token p50':>16}{'p95':>9}{'total p50':>12}{'p95':>9}{'chunks':>8}")
    rows = {}
    for name, runs in results.items():
        firsts, totals = [r[0] for r in runs], [r[1] for r in runs]
        rows[name] = (statistics.median(firsts), statistics.median(totals))
        print(
            f"{name:<34}{statistics.median(firsts) * 1000:>13.1f} ms{_pct(firsts, 0.95) * 1000:>6.1f} ms"
            f"{statistics.median(totals) * 1000:>9.1f} ms {_pct(totals, 0.95) * 1000:>7.1f} ms{runs[-1][2]:>8}"
        )
    first_g, total_g, chunks_g = gateway
    print(f"{'buffered path (HTTP API, Mangum)':<34}{first_g * 1000:>13.1f} ms{'':>9}{total_g * 1000:>9.1f} ms{'':>9}"
          f"{chunks_g:>8}")  # fmt: skip
    (lf, lt), (df, dt) = rows["long path"], rows["direct"]
    print(
        f"the long path adds {(lf - df) * 1000:.1f} ms to the first token and {(lt - dt) * 1000:.1f} ms to the total "
        f"(medians); through the buffered path the first token comes with the last ({first_g:.2f} s)"
    )


if __name__ == "__main__":
    main()
