"""Toolcore's call overhead: what a tool call costs beyond the target's own time, through the real
Lambda handler (API Gateway v2 event -> Mangum -> FastAPI -> permission, schema checks, SSRF check,
HTTP executor, output check -> response), against a zero-latency loopback target.

AWS calls (the audit event to SQS on moto's server) are counted and timed separately and excluded from
the overhead, as the target's time is. Two views of "the target's time":
  - upstream: measured inside Toolcore around the HTTP exchange (what Server-Timing reports);
  - bare: the p50 of the same POST made by a bare httpx client, so Toolcore's own use of httpx counts
    as overhead too.

Figures for the record, not assertions. Run: `make bench` or `python -m bench toolcore`.
Knobs: BENCH_TOOLCORE_CALLS (default 2000), BENCH_TOOLCORE_WARMUP (default 200), BENCH_TOOLCORE_PAUSE_MS
(default 5: an untimed pause between calls, so moto, on the same cores, is idle when the next call starts).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CALLS = int(os.environ.get("BENCH_TOOLCORE_CALLS", "2000"))
WARMUP = int(os.environ.get("BENCH_TOOLCORE_WARMUP", "200"))
PAUSE_S = float(os.environ.get("BENCH_TOOLCORE_PAUSE_MS", "5")) / 1000
ANSWER = json.dumps({"projects": [{"id": "p1", "name": "Garden", "status": "active"}]}).encode()


class _Target(BaseHTTPRequestHandler):
    """Answers at once: the target's own time is as close to zero as a loopback server gets."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)


def serve_target(port_file: str) -> None:
    """Run the target in its own process (so it does not share the GIL with the code measured)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def _start(cmd: list[str], port_file: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def _wait_port(port_file: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text():
            return int(port_file.read_text())
        if proc.poll() is not None:
            raise RuntimeError("the target process exited")
        time.sleep(0.05)
    raise TimeoutError("the target did not start")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _server_timing(header: str) -> dict[str, float]:
    """``upstream;dur=0.4, aws;dur=1.2;desc="1 calls"`` -> {"upstream": 0.4, "aws": 1.2}."""
    out = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        out[name] = float(rest.split("dur=")[1].split(";")[0])
    return out


def _event(body: dict[str, Any]) -> dict[str, Any]:
    event = json.loads((ROOT / "tests" / "events" / "apigw_v2_post_tools_call.json").read_text())
    event["body"] = json.dumps(body)
    event["headers"]["content-length"] = str(len(event["body"]))
    return event


class _Context:
    function_name = "bench-toolcore"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-toolcore"
    log_group_name = "/aws/lambda/bench-toolcore"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
    import boto3

    from devstack.resources import provision
    from devstack.stack import free_port, wait_http

    # the target and moto run in their own processes, as they would in production
    port_file = Path(tempfile.mkdtemp()) / "port"
    target = _start(
        [sys.executable, "-c", f"from bench.toolcore import serve_target; serve_target({str(port_file)!r})"]
    )
    moto_port = free_port()
    moto = _start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)])
    target_url = f"http://127.0.0.1:{_wait_port(port_file, target)}"
    endpoint = f"http://127.0.0.1:{moto_port}"
    wait_http(f"{endpoint}/moto-api/", 30, moto)
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    session = boto3.session.Session(**creds)
    clients = {s: session.client(s, endpoint_url=endpoint) for s in ("sqs", "dynamodb", "secretsmanager")}
    _, resolver, _ = provision(clients, database_url=None, internal_secret="dev-secret-token")
    os.environ.update(
        APP_ENV="local",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        USAGE_QUEUE_URL=resolver.physical["UsageQueue"]["Ref"],
        IDEMPOTENCY_TABLE=resolver.physical["IdempotencyTable"]["Ref"],
        POWERTOOLS_SERVICE_NAME="toolcore",
        POWERTOOLS_METRICS_NAMESPACE="DAARION-bench",
    )
    from daarion_common.aws import client
    from daarion_common.settings import get_settings

    get_settings.cache_clear()
    from toolcore.app import app, handler
    from toolcore.registry import load_registry
    from toolcore.service import ToolService
    from toolcore.ssrf import Allowlist

    schema_in = {"type": "object", "properties": {"microdao_id": {"type": "string"}}, "required": ["microdao_id"]}
    schema_out = {"type": "object", "properties": {"projects": {"type": "array"}}, "required": ["projects"]}
    registry = load_registry(
        data={"tools": [{
            "id": "bench.projects", "name": "bench", "description": "zero-latency loopback target",
            "input_schema": schema_in, "output_schema": schema_out, "executor": "http",
            "target": f"{target_url}/projects/list", "allowed_agents": ["agent:sofia"], "allowed_microdaos": None,
            "tenant_arg": "microdao_id", "timeout": 5, "enabled": True,
            "hints": {"read_only": True, "destructive": False, "idempotent": True},
        }]},
        environ={},
    )  # fmt: skip
    aws_calls = {"n": 0}

    def count(**_: Any) -> None:
        aws_calls["n"] += 1

    for service in ("sqs", "dynamodb"):
        client(service).meta.events.register("before-send", count)

    from daarion_common.observability import logger

    logger.registered_handler.setStream(io.StringIO())  # log lines are formatted, as in Lambda, not shown
    args = {"microdao_id": "microdao:7"}
    body = {"tool_id": "bench.projects", "agent_id": "agent:sofia", "microdao_id": "microdao:7", "args": args}
    totals, upstreams, aws_ms, overheads = [], [], [], []
    sink = io.StringIO()
    events = [_event(body) for _ in range(WARMUP + CALLS)]  # built before the clock starts
    import httpx

    plain = httpx.Client(transport=httpx.HTTPTransport(socket_options=[(6, 1, 1)]))  # TCP_NODELAY, as Toolcore
    payload = json.dumps({"args": args, "context": {"agent_id": "agent:sofia", "microdao_id": "microdao:7"}})
    bare: list[float] = []
    app.state.service = ToolService(registry, allowlist=Allowlist.parse(target_url[7:]))
    for i, event in enumerate(events):
        with contextlib.redirect_stdout(sink):  # logs and EMF metrics: written, as in Lambda, not shown
            started = time.perf_counter()
            response = handler(event, _Context())
            total = (time.perf_counter() - started) * 1000
        sink.seek(0)
        sink.truncate()
        time.sleep(PAUSE_S)  # untimed: lets moto finish the audit write before the next call is timed
        # the same POST from a bare client, interleaved: both see the same machine at the same time
        started = time.perf_counter()
        plain.post(f"{target_url}/projects/list", content=payload, headers={"Content-Type": "application/json"})
        bare_ms = (time.perf_counter() - started) * 1000
        time.sleep(PAUSE_S)
        if i == WARMUP - 1:
            aws_calls["n"] = 0
        if i < WARMUP:
            continue
        assert response["statusCode"] == 200 and json.loads(response["body"])["ok"], response

        timing = _server_timing(response["headers"]["server-timing"])
        bare.append(bare_ms)
        totals.append(total)
        upstreams.append(timing["upstream"])
        aws_ms.append(timing["aws"])
        overheads.append(total - timing["upstream"] - timing["aws"])

    # the shared HTTP stack alone (Mangum, FastAPI, auth middleware, Powertools logger and metrics)
    health_event = json.loads((ROOT / "tests" / "events" / "apigw_v2_get_health.json").read_text())
    health_event["rawPath"] = health_event["requestContext"]["http"]["path"] = "/internal/tools/health"
    health = []
    for i in range(WARMUP + CALLS):
        event = json.loads(json.dumps(health_event))
        with contextlib.redirect_stdout(sink):
            started = time.perf_counter()
            handler(event, _Context())
            elapsed = (time.perf_counter() - started) * 1000
        sink.seek(0)
        sink.truncate()
        if i >= WARMUP:
            health.append(elapsed)

    bare_p50 = statistics.median(bare)
    beyond_bare = [t - a - bare_p50 for t, a in zip(totals, aws_ms, strict=True)]  # vs the bare p50

    def row(label: str, values: list[float]) -> str:
        return f"  {label:<40} p50 {statistics.median(values):7.3f} ms   p99 {_percentile(values, 0.99):7.3f} ms"

    p50_overhead, p50_beyond_bare = statistics.median(overheads), statistics.median(beyond_bare)
    lines = [
        f"toolcore call overhead over {CALLS} calls (after {WARMUP} warm-up) to a zero-latency loopback target",
        row("end to end through the handler", totals),
        row("upstream (timed inside Toolcore)", upstreams),
        row("bare httpx POST to the target", bare),
        row("AWS (audit event; excluded)", aws_ms),
        f"  AWS calls: {aws_calls['n']} over {CALLS} tool calls ({aws_calls['n'] / CALLS:.2f}/call, SQS SendMessage)",
        row("OVERHEAD beyond upstream, excl. AWS", overheads),
        row("OVERHEAD beyond bare POST, excl. AWS", beyond_bare),
        row("  of which the shared HTTP stack", health) + "  (GET /internal/tools/health on the same handler)",
        f"  target p50 <= 2 ms: {'met' if p50_overhead <= 2 else 'NOT met'} (beyond upstream), "
        f"{'met' if p50_beyond_bare <= 2 else 'NOT met'} (beyond bare POST)",
    ]
    print("\n".join(lines), flush=True)
    for proc in (target, moto):
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
