"""Usage recorder throughput: events per second through the real handler, against moto's server over
HTTP, in SQS batches of 25 — first delivery and a full redelivery — and the DynamoDB writes per event.

Figures for the record. Run: `make bench` or `python -m bench usage_recorder`.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

# moto's TransactWriteItems deep-copies every table (to roll back), so its cost grows with the table:
# the figures are the emulator's, much slower than DynamoDB's, and fall as the table fills.
EVENTS = int(os.environ.get("BENCH_USAGE_EVENTS", "200"))
BATCH = 25


class _Context:
    function_name = "bench-usage-recorder"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "bench")
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF lines would drown the figures
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        clients = {s: session.client(s, endpoint_url=endpoint) for s in ("sqs", "dynamodb", "secretsmanager")}
        from devstack.resources import provision

        _, resolver, _ = provision(clients, database_url=None, internal_secret="bench")
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1", APP_ENV="local",
            USAGE_TABLE=resolver.physical["UsageTable"]["Ref"],
        )  # fmt: skip
        from daarion_common.aws import client, reset_clients
        from daarion_common.events import LlmCallEvent, ToolCallEvent
        from daarion_common.settings import get_settings

        # Other benchmarks may have run in this process: forget their settings and clients.
        get_settings.cache_clear()
        reset_clients()
        from daarion_common.usage_ledger import ITEMS_PER_EVENT
        from devstack.pollers import sqs_record
        from usage_recorder.app import handler

        calls: Counter[str] = Counter()
        in_aws = [0.0]
        started: list[float] = []

        def before(model: Any, **_: Any) -> None:  # must return None: a value would replace the response
            calls.update([model.name])
            started.append(time.perf_counter())

        def after(**_: Any) -> None:
            in_aws[0] += time.perf_counter() - started.pop()

        ddb = client("dynamodb")
        ddb.meta.events.register("before-call.dynamodb.*", before)
        ddb.meta.events.register("after-call.dynamodb.*", after)
        start_day = datetime(2026, 11, 1, tzinfo=UTC)
        events = []
        for i in range(EVENTS):
            common = {
                "agent_id": f"agent-{i % 20}", "microdao_id": f"dao-{i % 5}", "latency_ms": 50.0 + i % 100,
                "status": "error" if i % 17 == 0 else "ok", "occurred_at": start_day + timedelta(hours=i % 240),
            }  # fmt: skip
            if i % 4 == 3:
                events.append(ToolCallEvent(tool_id="projects.list", **common))
            else:
                events.append(
                    LlmCallEvent(model="gpt-4.1-mini", prompt_tokens=200, completion_tokens=50, total_tokens=250,
                                 cost_usd=0.00016, **common)
                )  # fmt: skip
        batches = [
            {"Records": [sqs_record({"MessageId": str(uuid.uuid4()), "ReceiptHandle": "r", "Body": e.model_dump_json()},
                                    "arn:aws:sqs:us-east-1:123456789012:bench") for e in events[i : i + BATCH]]}
            for i in range(0, len(events), BATCH)
        ]  # fmt: skip
        print(
            f"{EVENTS} events in batches of {BATCH}, handler in-process, DynamoDB = moto server over HTTP ({endpoint})"
        )
        for label in ("first delivery", "redelivery (all duplicates)"):
            calls.clear()
            in_aws[0] = 0.0
            per_batch = []
            began = time.perf_counter()
            for batch in batches:
                t0 = time.perf_counter()
                result = handler(batch, _Context())
                per_batch.append(time.perf_counter() - t0)
                assert not result["batchItemFailures"], result
            elapsed = time.perf_counter() - began
            p50_ms = statistics.median(per_batch) * 1000
            print(
                f"  {label:<28} {EVENTS / elapsed:8.0f} events/s   batch p50 {p50_ms:7.1f} ms"
                f"   DynamoDB API calls/event {sum(calls.values()) / EVENTS:.2f} ({dict(calls)})"
            )
            own_us = (elapsed - in_aws[0]) / EVENTS * 1e6
            print(f"  {'':<28} recorder's own time (excluding DynamoDB calls): {own_us:.0f} us/event")
        print(
            f"  writes per event: 1 TransactWriteItems call of {ITEMS_PER_EVENT} items (1 conditional put + "
            f"3 aggregate updates) = {2 * ITEMS_PER_EVENT} WCU in DynamoDB "
            "(transactional writes cost 2 WCU per item <= 1 KB);\n"
            "  a duplicate is cancelled by the condition and writes nothing"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
