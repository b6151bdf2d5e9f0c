"""Dollars reserved vs dollars spent: how much of a microDAO's budget the LLM Proxy holds for a mix of
calls, before and after the usage recorder's corrections.

The in-process Lambda handler serves a mix of calls (short and long prompts, Cyrillic and English, small
and large ``max_tokens``, tools, answers that use little or all of ``max_tokens``, a provider refusal)
against a scripted OpenAI-compatible upstream on loopback, with moto's server (subprocess) for the
rate-limit table and the usage queue. Each admission reserves an upper bound of the call's cost on the
microDAO's daily budget counter; then the usage recorder drains the queue and corrects each counter to
what the provider billed. Printed: the counter over the billed dollars, per kind of call (from the events'
reservations) and in total, before and after corrections.

Run: `make bench` or `python -m bench usage_reservations` (BENCH_RESERVATION_ROUNDS, default 10).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_RESERVATION_ROUNDS", "10"))

CYRILLIC = "Підсумуй обговорення бюджету громади за минулий тиждень і запропонуй наступні кроки. "
ENGLISH = "Summarise the garden project's status for the weekly update, with open questions. "
TOOL = {
    "type": "function",
    "function": {
        "name": "projects_list",
        "description": "List the microDAO's projects with their status",
        "parameters": {"type": "object", "properties": {"status": {"type": "string", "enum": ["open", "done"]}}},
    },
}


def _mix(reply: Any) -> list[tuple[str, dict[str, Any], Any]]:
    """(kind, request fields, scripted reply) for one round of the mix."""
    return [
        ("short chat, short answer", {"max_tokens": 256}, reply.text("Так.", prompt_tokens=24, completion_tokens=3)),
        (
            "short chat, max_tokens used up",
            {"max_tokens": 64},
            reply.text("…", prompt_tokens=24, completion_tokens=64, finish_reason="length"),
        ),
        (
            "long Cyrillic prompt",
            {"messages": [{"role": "user", "content": CYRILLIC * 40}], "max_tokens": 512},
            reply.text("Підсумок…", prompt_tokens=1450, completion_tokens=180),
        ),
        (
            "long English prompt",
            {"messages": [{"role": "user", "content": ENGLISH * 40}], "max_tokens": 512},
            reply.text("Summary…", prompt_tokens=640, completion_tokens=150),
        ),
        (
            "tools offered",
            {"tools": [TOOL], "max_tokens": 256},
            reply.text("Two projects are open.", prompt_tokens=95, completion_tokens=12),
        ),
        ("no max_tokens (model's cap)", {}, reply.text("Ok.", prompt_tokens=24, completion_tokens=40)),
        ("refused by the provider (400)", {"max_tokens": 256}, reply.error(400)),
    ]


def main() -> None:
    from bench.llm_proxy import _start_moto, in_process_env

    in_process_env("CRITICAL")
    import boto3
    import yaml

    from devstack.resources import provision
    from tests.fixtures.llm_proxy import Reply, ScriptedLLM

    moto, endpoint = _start_moto()
    upstream = ScriptedLLM("bench")
    upstream.record = False
    try:
        clients = {
            s: boto3.client(s, endpoint_url=endpoint, region_name="us-east-1")
            for s in ("sqs", "dynamodb", "secretsmanager")
        }
        _, resolver, _ = provision(clients, database_url=None, internal_secret="dev-secret-token")
        dao = f"dao-bench-{uuid.uuid4().hex[:6]}"
        config = yaml.safe_load((ROOT / "functions" / "llm_proxy" / "routing.yaml").read_text())
        big = 10**9
        config["limits"]["microdaos"] = {dao: {"microdao_requests_per_hour": big, "microdao_usd_per_day": 1000.0}}
        config_path = Path(tempfile.mkdtemp()) / "routing.json"
        config_path.write_text(json.dumps(config))
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            RATE_LIMIT_TABLE=resolver.physical["RateLimitTable"]["Ref"],
            USAGE_TABLE=resolver.physical["UsageTable"]["Ref"],
            USAGE_QUEUE_URL=resolver.physical["UsageQueue"]["Ref"],
            LLM_PROXY_CONFIG=str(config_path),
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY="sk-bench-key-000000000000",
        )
        _measure(clients, resolver, dao, upstream, Reply)
    finally:
        upstream.close()
        moto.terminate()
        moto.wait()


def _measure(clients: dict[str, Any], resolver: Any, dao: str, upstream: Any, reply: Any) -> None:
    from daarion_common.events import usage_event_adapter
    from llm_proxy.app import handler
    from tests.conftest import LambdaContext
    from tests.fixtures.llm_proxy import apigw_event, proxy_body
    from tests.fixtures.usage import drain
    from usage_recorder.app import handler as recorder

    table = resolver.physical["RateLimitTable"]["Ref"]
    queue = resolver.physical["UsageQueue"]

    def counter(pk: str) -> int:
        item = clients["dynamodb"].get_item(TableName=table, Key={"pk": {"S": pk}}).get("Item") or {}
        return int(item["usd_micros"]["N"]) if "usd_micros" in item else 0

    kinds: dict[str, str] = {}  # request id -> kind
    day = int(time.time() // 86400)
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' EMF metric lines
        for i in range(ROUNDS):
            for kind, fields, scripted in _mix(reply):
                upstream.script(scripted)
                body = proxy_body("gpt-4.1-mini", agent=f"agent:bench-{i % 3}", dao=dao)
                body.update(fields)
                event = apigw_event("POST", "/internal/llm/proxy", body)
                kinds[event["requestContext"]["requestId"]] = kind  # the proxy's request id
                handler(event, LambdaContext())
    if int(time.time() // 86400) != day:
        print("the UTC day changed during the run: run it again")
        return
    budget_pk = f"dao#{dao}#d#{day}"
    held = counter(budget_pk)
    seen: dict[str, Any] = {}

    def recording_recorder(sqs_event: dict[str, Any], context: Any) -> Any:
        for record in sqs_event["Records"]:
            event = usage_event_adapter.validate_json(record["body"])
            seen[event.event_id] = event
        return recorder(sqs_event, context)

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        delivery = drain(clients["sqs"], queue["Ref"], queue["Arn"], recording_recorder, batch_size=10)
    correction_ms = (time.perf_counter() - started) * 1000
    events = list(seen.values())
    corrected = counter(budget_pk)

    reserved_by: dict[str, int] = defaultdict(int)
    spent_by: dict[str, int] = defaultdict(int)
    calls_by: dict[str, int] = defaultdict(int)
    for event in events:
        kind = kinds.get(event.request_id or "", "other")
        reserved_by[kind] += sum(
            c.amount for c in (event.reservation.counters if event.reservation else []) if c.pk == budget_pk
        )
        spent_by[kind] += math.ceil(round(event.cost_usd * 1_000_000, 6))
        calls_by[kind] += 1
    spent = sum(spent_by.values())

    def ratio(a: int, b: int) -> str:
        return f"{a / b:.2f}x" if b else ("-" if a == 0 else "billed $0")

    print(f"Dollars reserved vs spent, {len(events)} calls ({ROUNDS} rounds of the mix), model gpt-4.1-mini")
    print(f"  {'kind of call':<34}{'calls':>6}{'reserved $':>13}{'spent $':>12}{'reserved/spent':>17}")
    for kind, _, _ in _mix(reply):
        r, s = reserved_by[kind], spent_by[kind]
        print(f"  {kind:<34}{calls_by[kind]:>6}{r / 1e6:>13.6f}{s / 1e6:>12.6f}{ratio(r, s):>17}")
    print(f"  budget counter before corrections: ${held / 1e6:.6f} = {ratio(held, spent)} of ${spent / 1e6:.6f} spent")
    print(
        f"  budget counter after corrections:  ${corrected / 1e6:.6f} = {ratio(corrected, spent)} of spent"
        f" ({delivery.records} events through the recorder in {delivery.batches} batches, {correction_ms:.0f} ms,"
        f" {len(delivery.failures)} failures)"
    )
