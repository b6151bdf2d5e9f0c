"""The LLM Proxy's own overhead per request, against a zero-latency OpenAI-compatible upstream on loopback.

Per call, the in-process Lambda handler (API Gateway v2 event -> Mangum -> FastAPI -> routing, limiter,
provider call through the `openai` SDK, usage event -> response) is timed from outside; the handler reports
in its Server-Timing header the time spent inside the upstream call and in AWS calls (the DynamoDB limiter
transaction and the SQS usage send, to moto's server in a subprocess). Overhead = handler - upstream - AWS.
Beside it: the same request sent to the upstream directly with the `openai` SDK
(``chat.completions.create``), alternating with the proxy calls so both see the same machine load, and
the ratio of the proxy's time (AWS excluded) to the direct call's.

Run: `make bench` or `python -m bench llm_proxy` (BENCH_LLM_CALLS, default 2000).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CALLS = int(os.environ.get("BENCH_LLM_CALLS", "2000"))
WARMUP = 200


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(200):
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            return proc, endpoint
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("moto did not start")


def in_process_env(log_level: str = "WARNING") -> None:
    """The functions importable and the environment of a handler run in this process against moto."""
    for path in (str(ROOT / "functions"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.update(
        APP_ENV="local",
        POWERTOOLS_SERVICE_NAME="bench",
        POWERTOOLS_METRICS_NAMESPACE="bench",
        POWERTOOLS_LOG_LEVEL=log_level,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )


def main() -> None:
    in_process_env()
    import boto3
    import yaml

    from devstack.resources import provision
    from tests.fixtures.llm_proxy import apigw_event, proxy_body

    moto, endpoint = _start_moto()
    upstream_proc, upstream_url = _start_upstream()
    try:
        clients = {
            s: boto3.client(s, endpoint_url=endpoint, region_name="us-east-1")
            for s in ("sqs", "dynamodb", "secretsmanager")
        }
        _, resolver, _ = provision(clients, database_url=None, internal_secret="dev-secret-token")
        config = yaml.safe_load((ROOT / "functions" / "llm_proxy" / "routing.yaml").read_text())
        big = 10**12
        config["limits"]["agents"] = {
            "dao-bench": {"bench": {"agent_requests_per_minute": big, "agent_tokens_per_minute": big}}
        }
        config["limits"]["microdaos"] = {"dao-bench": {"microdao_requests_per_hour": big}}
        config_path = Path(tempfile.mkdtemp()) / "routing.json"
        config_path.write_text(json.dumps(config))
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            RATE_LIMIT_TABLE=resolver.physical["RateLimitTable"]["Ref"],
            USAGE_QUEUE_URL=resolver.physical["UsageQueue"]["Ref"],
            LLM_PROXY_CONFIG=str(config_path),
            OPENAI_BASE_URL=upstream_url,
            OPENAI_API_KEY="sk-bench-key-000000000000",
        )
        figures = _measure(upstream_url, apigw_event, proxy_body)
    finally:
        for proc in (upstream_proc, moto):
            proc.terminate()
            proc.wait()
    _print(figures)


_UPSTREAM = """
import sys, threading
sys.path[:0] = sys.argv[1:]
from tests.fixtures.llm_proxy import Reply, ScriptedLLM
server = ScriptedLLM("bench", Reply.text("ok", prompt_tokens=20, completion_tokens=2))
server.record = False
print(server.base_url, flush=True)
threading.Event().wait()
"""


def _start_upstream() -> tuple[subprocess.Popen[str], str]:
    """The zero-latency upstream in its own process: its threads must not share the handler's GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _UPSTREAM, str(ROOT / "functions"), str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _measure(upstream_url: str, apigw_event: Any, proxy_body: Any) -> dict[str, Any]:
    from openai import OpenAI

    from llm_proxy.app import handler
    from tests.conftest import LambdaContext

    body = proxy_body("gpt-4.1-mini", agent="bench", dao="dao-bench")
    event = apigw_event("POST", "/internal/llm/proxy", body)
    timing = re.compile(r"(\w+);dur=([0-9.]+)(?:;desc=\"(\d+) calls\")?")
    total, upstream_ms, aws_ms, aws_calls, overhead, direct = [], [], [], [], [], []
    client = OpenAI(base_url=upstream_url, api_key="sk-bench", max_retries=0)
    messages = body["messages"]
    sink = io.StringIO()
    # Proxy and direct calls alternate, so both see the same machine load.
    with contextlib.redirect_stdout(sink):  # the handler's EMF metrics lines; printed in Lambda too
        for i in range(WARMUP + CALLS):
            started = time.perf_counter()
            response = handler(event, LambdaContext())
            elapsed = (time.perf_counter() - started) * 1000
            if response["statusCode"] != 200:
                raise RuntimeError(f"proxy answered {response['statusCode']}: {response['body']}")
            parts = {m[0]: (float(m[1]), m[2]) for m in timing.findall(response["headers"]["server-timing"])}

            started = time.perf_counter()
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4.1-mini", messages=messages, max_tokens=256
            )
            json.loads(raw.content)
            direct_ms = (time.perf_counter() - started) * 1000
            sink.seek(0)
            sink.truncate()
            if i < WARMUP:
                continue
            total.append(elapsed)
            upstream_ms.append(parts["upstream"][0])
            aws_ms.append(parts["aws"][0])
            aws_calls.append(int(parts["aws"][1] or 0))
            overhead.append(elapsed - parts["upstream"][0] - parts["aws"][0])
            direct.append(direct_ms)
    return {
        "total": total,
        "upstream": upstream_ms,
        "aws": aws_ms,
        "aws_calls": aws_calls,
        "overhead": overhead,
        "direct": direct,
    }


def _print(f: dict[str, Any]) -> None:
    def row(name: str, values: list[float]) -> str:
        return f"  {name:<44}{_pct(values, 0.5):>9.3f}{_pct(values, 0.99):>9.3f}{statistics.mean(values):>9.3f}"

    without_aws = [t - a for t, a in zip(f["total"], f["aws"], strict=True)]
    print(f"LLM Proxy overhead, {len(f['total'])} calls (after {WARMUP} warm-up), zero-latency loopback upstream")
    print(f"  {'ms':<44}{'p50':>9}{'p99':>9}{'mean':>9}")
    print(row("proxy overhead (handler - upstream - AWS)", f["overhead"]))
    print(row("handler excluding AWS (incl. upstream call)", without_aws))
    print(row("upstream call inside the proxy", f["upstream"]))
    print(row("same request to the upstream directly", f["direct"]))
    print(row("AWS calls (limiter + usage send, moto)", f["aws"]))
    p50_ratio = _pct(without_aws, 0.5) / _pct(f["direct"], 0.5)
    p99_ratio = _pct(without_aws, 0.99) / _pct(f["direct"], 0.99)
    print(f"  ratio proxy (excl. AWS) / direct: p50 {p50_ratio:.2f}x, p99 {p99_ratio:.2f}x")
    calls = sorted(set(f["aws_calls"]))
    print(f"  AWS calls per request: {calls} (1 DynamoDB TransactWriteItems + 1 SQS SendMessage)")
    ok50, ok99 = _pct(f["overhead"], 0.5) <= 1.5, _pct(f["overhead"], 0.99) <= 5.0
    print(
        f"  target overhead p50 <= 1.5 ms: {'met' if ok50 else 'NOT met'}; p99 <= 5 ms: {'met' if ok99 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
