"""Read `template.yaml` the way the local stack needs it.

The template is the single description of the deployment. This module turns it into plain data:
the functions (handler, timeout, environment, HTTP routes, SQS sources, schedules) and the
resources the stack must create (queues, tables, secrets), resolving the few intrinsic functions
the template uses (Ref, GetAtt, Sub, If, Equals, Not, Join) against local physical ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"

ACCOUNT_ID = "123456789012"  # moto's default; the stack asks its endpoint (STS) and uses that one
REGION = "us-east-1"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short tags (!Ref X) into their long form ({"Ref": "X"})."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


@dataclass(frozen=True)
class HttpRoute:
    method: str  # GET, POST, ..., or ANY
    path: str  # /internal/tools/{tool_id} or /{proxy+}
    function: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class SqsSource:
    queue: str  # logical id of the queue
    batch_size: int
    batching_window_s: int
    report_failures: bool


@dataclass(frozen=True)
class Schedule:
    name: str
    expression: str
    input: str | None


@dataclass
class FunctionSpec:
    logical_id: str
    handler: str  # module.attr, from ImageConfig.Command
    timeout: int
    memory_mb: int
    environment: dict[str, str]
    routes: list[HttpRoute] = field(default_factory=list)
    sqs_sources: list[SqsSource] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    build_arg_function: str | None = None
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions: beyond it Lambda throttles
    entry_point: list[str] = field(default_factory=list)  # ImageConfig.EntryPoint: a runtime of its own
    command: list[str] = field(default_factory=list)  # ImageConfig.Command (the handler, or the entry's args)
    function_url: dict[str, Any] | None = None  # FunctionUrlConfig: {AuthType, InvokeMode}

    @property
    def streams(self) -> bool:
        """Served through a Function URL with response streaming, by its own runtime (the EntryPoint)."""
        return bool(self.function_url and self.function_url.get("InvokeMode") == "RESPONSE_STREAM")


class Resolver:
    """Evaluates intrinsic functions against parameters and the local physical ids of resources."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str],
        physical: dict[str, dict[str, str]],
        account_id: str = ACCOUNT_ID,
    ):
        self.account_id = account_id
        self.template = template
        self.parameters = parameters
        self.physical = physical  # logical id -> {"Ref": ..., "Arn": ..., "QueueName": ...}
        self._conditions: dict[str, bool] = {}

    def parameter(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        spec = self.template.get("Parameters", {}).get(name)
        if spec is None:
            raise KeyError(f"unknown parameter {name}")
        default = spec.get("Default")
        if spec.get("Type") == "CommaDelimitedList":
            return [] if default in (None, "") else [s.strip() for s in str(default).split(",")]
        return "" if default is None else str(default)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        ((key, arg),) = value.items()
        if key == "Ref":
            return self._ref(arg)
        if key == "Fn::GetAtt":
            logical, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.physical[logical][attr]
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return left == right
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if key == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        if key == "Fn::Join":
            sep, items = arg
            items = self.resolve(items)
            return sep.join(str(i) for i in items)
        if key == "Condition":
            return self.condition(arg)
        return {key: self.resolve(arg)}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": "daarion-local",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        if name in self.physical:
            return self.physical[name]["Ref"]
        raise KeyError(f"Ref to {name}, which the local stack did not create")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attr = name.split(".", 1)
                return str(self.physical[logical][attr])
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!][^}]*)\}", replace, text)


def resources_of_type(template: dict[str, Any], type_name: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == type_name}


def functions(template: dict[str, Any], resolver: Resolver) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function, with Globals merged in and its environment resolved."""
    glob = template.get("Globals", {}).get("Function", {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id, res in resources_of_type(template, "AWS::Serverless::Function").items():
        props = res.get("Properties", {})
        env: dict[str, Any] = {}
        env.update(glob.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        resolved_env = {k: v for k, v in ((k, resolver.resolve(v)) for k, v in env.items()) if v is not None}
        image = props.get("ImageConfig", {})
        command = image.get("Command") or [props.get("Handler", "")]
        spec = FunctionSpec(
            logical_id=logical_id,
            handler=command[0],
            timeout=int(props.get("Timeout", glob.get("Timeout", 3))),
            memory_mb=int(props.get("MemorySize", glob.get("MemorySize", 128))),
            environment={k: str(v) for k, v in resolved_env.items()},
            build_arg_function=(res.get("Metadata", {}).get("DockerBuildArgs") or {}).get("FUNCTION"),
            reserved_concurrency=int(props["ReservedConcurrentExecutions"])
            if props.get("ReservedConcurrentExecutions") is not None
            else None,
            entry_point=[str(part) for part in image.get("EntryPoint") or []],
            command=[str(part) for part in command],
            function_url=resolver.resolve(props["FunctionUrlConfig"]) if props.get("FunctionUrlConfig") else None,
        )
        for name, event in (props.get("Events") or {}).items():
            etype, eprops = event.get("Type"), event.get("Properties", {})
            if etype == "HttpApi":
                spec.routes.append(
                    HttpRoute(eprops.get("Method", "ANY").upper(), eprops.get("Path", "/$default"), logical_id)
                )
            elif etype == "SQS":
                queue_ref = eprops["Queue"]
                queue = queue_ref["Fn::GetAtt"][0] if isinstance(queue_ref, dict) else str(queue_ref)
                spec.sqs_sources.append(
                    SqsSource(
                        queue=queue,
                        batch_size=int(eprops.get("BatchSize", 10)),
                        batching_window_s=int(eprops.get("MaximumBatchingWindowInSeconds", 0)),
                        report_failures="ReportBatchItemFailures" in (eprops.get("FunctionResponseTypes") or []),
                    )
                )
            elif etype in ("ScheduleV2", "Schedule"):
                spec.schedules.append(
                    Schedule(name, eprops.get("ScheduleExpression", eprops.get("Schedule", "")), eprops.get("Input"))
                )
        specs[logical_id] = spec
    return specs


_RATE = re.compile(r"^rate\((\d+)\s+(second|seconds|minute|minutes|hour|hours|day|days)\)$")


def rate_seconds(expression: str) -> int | None:
    """Seconds between runs of a rate() expression; None for cron() (not run locally)."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2).rstrip("s")
    return amount * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]
