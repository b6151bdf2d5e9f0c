"""template.yaml is valid, and it and the code agree: handlers import, routes are served, images build."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack import template as tpl

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = tpl.load_template()
FUNCTIONS = tpl.resources_of_type(TEMPLATE, "AWS::Serverless::Function")
RESOLVER = tpl.Resolver(
    TEMPLATE, {"DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"}, {}
)


def _physical_stub() -> dict[str, dict[str, str]]:
    stub = {}
    for logical_id in TEMPLATE["Resources"]:
        stub[logical_id] = {"Ref": f"ref-{logical_id}", "Arn": f"arn-{logical_id}", "QueueName": logical_id}
    return stub


RESOLVER.physical.update(_physical_stub())
SPECS = tpl.functions(TEMPLATE, RESOLVER)


def test_cfn_lint_passes():
    result = subprocess.run(
        [str(Path(os.sys.executable).parent / "cfn-lint"), str(ROOT / "template.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes_offline():
    local_sam = ROOT / ".tools" / "sam" / "bin" / "sam"
    sam = os.environ.get("SAM_BIN") or (str(local_sam) if local_sam.exists() else shutil.which("sam"))
    if not sam:
        pytest.fail("SAM CLI not found: run the suite with `make test`, which installs it in .tools/sam")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION="us-east-1", SAM_CLI_TELEMETRY="0")
    result = subprocess.run(
        [sam, "validate", "--lint", "--template", str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_six_functions_as_container_images():
    assert set(SPECS) == {
        "LlmProxyFunction",
        "LlmProxyStreamFunction",
        "MemoryFunction",
        "ToolcoreFunction",
        "UsageRecorderFunction",
        "MemoryIndexerFunction",
    }
    for logical_id, res in FUNCTIONS.items():
        assert res["Properties"]["PackageType"] == "Image", logical_id
        meta = res["Metadata"]
        assert meta["Dockerfile"] == "Dockerfile" and meta["DockerContext"] == "."
        folder = ROOT / "functions" / meta["DockerBuildArgs"]["FUNCTION"]
        assert (folder / "requirements.txt").is_file(), folder
        assert SPECS[logical_id].handler.startswith(meta["DockerBuildArgs"]["FUNCTION"] + ".")


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_maps_to_an_importable_handler(logical_id):
    module_name, _, attr = SPECS[logical_id].handler.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attr)
    assert callable(handler)


def _app_routes(module_name: str) -> set[tuple[str, str]]:
    """(METHOD, path) of every route the app serves, included routers too (read from its OpenAPI)."""
    app = importlib.import_module(module_name).app
    paths = app.openapi()["paths"]
    served = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    return served | {("GET", app.openapi_url)}  # the document itself, not listed in itself


@pytest.mark.parametrize("logical_id", sorted(k for k, s in SPECS.items() if s.routes))
def test_every_http_route_is_served_by_its_functions_app(logical_id):
    spec = SPECS[logical_id]
    served = _app_routes(spec.handler.rpartition(".")[0])
    for route in spec.routes:
        assert (route.method, route.path) in served, (
            f"{route.route_key} is in template.yaml but not in {logical_id}'s app"
        )


def test_the_contract_routes_are_all_in_the_template():
    keys = {r.route_key for s in SPECS.values() for r in s.routes}
    for key in (
        "GET /health",
        "POST /internal/llm/proxy",
        "POST /internal/agent-memory/query",
        "POST /internal/agent-memory/store",
        "GET /internal/tools",
        "POST /internal/tools/call",
    ):
        assert key in keys


def test_route_keys_are_unique_across_functions():
    keys = [r.route_key for s in SPECS.values() for r in s.routes]
    assert len(keys) == len(set(keys))


def test_sqs_consumers_report_partial_failures_and_queues_have_dlqs():
    resources = TEMPLATE["Resources"]
    consumers = [(k, s) for k, s in SPECS.items() if s.sqs_sources]
    assert {k for k, _ in consumers} == {"UsageRecorderFunction", "MemoryIndexerFunction"}
    for logical_id, spec in consumers:
        for source in spec.sqs_sources:
            assert source.report_failures, logical_id
            queue = resources[source.queue]["Properties"]
            assert queue["VisibilityTimeout"] >= 6 * spec.timeout, (
                f"{source.queue} visibility < 6x {logical_id} timeout"
            )
            redrive = queue["RedrivePolicy"]
            assert redrive["deadLetterTargetArn"]["Fn::GetAtt"][0] in resources
            assert 1 <= redrive["maxReceiveCount"] <= 10


def test_tables_expire_by_ttl_and_indexer_runs_on_a_schedule():
    tables = tpl.resources_of_type(TEMPLATE, "AWS::DynamoDB::Table")
    assert {"UsageTable", "RateLimitTable", "IdempotencyTable"} <= set(tables)
    for name, table in tables.items():
        assert table["Properties"]["TimeToLiveSpecification"]["Enabled"], name
    schedules = SPECS["MemoryIndexerFunction"].schedules
    assert schedules and tpl.rate_seconds(schedules[0].expression) == 300


def test_globals_name_every_setting_the_shared_package_reads():
    from daarion_common.memory.config import MemorySettings
    from daarion_common.settings import Settings

    env = set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    for spec in FUNCTIONS.values():
        env |= set(spec["Properties"].get("Environment", {}).get("Variables", {}))
    known = {(f.alias or name).upper() for cls in (Settings, MemorySettings) for name, f in cls.model_fields.items()}
    assert env - {"STAGE", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= known


def test_least_privilege_no_wildcard_policies():
    for logical_id, res in FUNCTIONS.items():
        for policy in res["Properties"].get("Policies", []):
            assert isinstance(policy, dict), f"{logical_id} attaches a managed policy by name: {policy}"
            assert not any("FullAccess" in name for name in policy), logical_id


def test_usage_recorder_corrects_reservations_on_the_rate_limit_table():
    recorder = FUNCTIONS["UsageRecorderFunction"]["Properties"]
    assert recorder["Environment"]["Variables"]["RATE_LIMIT_TABLE"] == {"Ref": "RateLimitTable"}
    writable = [p["DynamoDBWritePolicy"]["TableName"] for p in recorder["Policies"] if "DynamoDBWritePolicy" in p]
    assert {"Ref": "RateLimitTable"} in writable and {"Ref": "UsageTable"} in writable
    # and the local stack (which reads the template) gives the recorder the same table
    assert SPECS["UsageRecorderFunction"].environment["RATE_LIMIT_TABLE"] == "ref-RateLimitTable"


def test_every_function_has_a_declared_log_group_with_retention():
    groups = tpl.resources_of_type(TEMPLATE, "AWS::Logs::LogGroup").values()
    names = {g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups}
    assert names == {f"/aws/lambda/${{{logical_id}}}" for logical_id in FUNCTIONS}
    assert all("RetentionInDays" in g["Properties"] for g in groups)


def test_reconcile_lines_of_the_proxy_and_toolcore_are_counted_and_alarmed():
    filters = tpl.resources_of_type(TEMPLATE, "AWS::Logs::MetricFilter").values()
    by_group = {f["Properties"]["LogGroupName"]["Ref"]: f["Properties"] for f in filters}
    assert {"LlmProxyLogGroup", "ToolcoreLogGroup"} <= set(by_group)
    metrics_ = set()
    for props in by_group.values():
        assert props["FilterPattern"] == "{ $.reconcile IS TRUE }"
        (transformation,) = props["MetricTransformations"]
        metrics_.add((transformation["MetricNamespace"], transformation["MetricName"]))
    ((namespace, metric),) = metrics_
    alarms = [
        a["Properties"]
        for a in tpl.resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == metric
    ]
    (alarm,) = alarms
    assert alarm["Namespace"] == namespace and alarm["Statistic"] == "Sum" and alarm["Period"] == 300
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


# ---------------------------------------------------------------- the long path (Function URL, streaming)
LONG = FUNCTIONS["LlmProxyStreamFunction"]["Properties"]


def test_the_long_path_is_the_same_image_and_app_streamed_through_a_function_url():
    buffered = FUNCTIONS["LlmProxyFunction"]
    assert FUNCTIONS["LlmProxyStreamFunction"]["Metadata"] == buffered["Metadata"]  # the very same image
    assert LONG["FunctionUrlConfig"] == {"AuthType": {"Ref": "LongPathAuthType"}, "InvokeMode": "RESPONSE_STREAM"}
    assert TEMPLATE["Parameters"]["LongPathAuthType"]["AllowedValues"] == ["NONE", "AWS_IAM"]
    entry, command = LONG["ImageConfig"]["EntryPoint"], LONG["ImageConfig"]["Command"]
    assert entry[1:] == ["-m", "daarion_common.lambda_streaming"]
    # the runtime serves the app the buffered function's handler wraps, with the same observability hook
    app_path = command[0]
    handler_module = buffered["Properties"]["ImageConfig"]["Command"][0].rpartition(".")[0]
    assert app_path == f"{handler_module}.app"
    from daarion_common import lambda_streaming

    assert lambda_streaming.load(app_path) is importlib.import_module(handler_module).app
    assert callable(lambda_streaming.load(command[command.index("--around") + 1]))
    # what the buffered function reads, the long path reads too (limits, usage, keys)
    assert LONG["Environment"] == buffered["Properties"]["Environment"]
    assert LONG["Policies"] == buffered["Properties"]["Policies"]
    assert not LONG.get("Events"), "the long path is the Function URL only, never an HTTP API route (30 s cut)"
    assert TEMPLATE["Outputs"]["LlmProxyStreamUrl"]["Value"] == {
        "Fn::GetAtt": ["LlmProxyStreamFunctionUrl", "FunctionUrl"]
    }


def test_the_long_paths_timeout_fits_the_longest_configured_call():
    """The longest single try of any model fits the long path's deadline (routing.yaml ``deadlines.long_s``,
    which ends every call: all tries, all fallbacks), and the deadline plus the usage send fits the long
    path's Timeout, within Lambda's 900 s maximum."""
    import yaml

    config = yaml.safe_load((ROOT / "functions" / "llm_proxy" / "routing.yaml").read_text())
    chat = {name: m for name, m in config["models"].items() if m.get("kind", "chat") == "chat"}
    longest_try = max(m["timeout_s"] for m in chat.values())
    assert longest_try <= config["deadlines"]["long_s"], longest_try
    assert config["deadlines"]["long_s"] + 10 <= LONG["Timeout"] <= 900
