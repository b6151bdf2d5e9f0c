"""The tool registry: loaded from a config file, validated once at load, immutable afterwards.

Every problem found at load is reported with the tool and the field it concerns (``tool
'task.create': field 'input_schema': ...``), all at once, and the registry refuses to load: a
half-valid registry is never served.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_CONFIG = Path(__file__).with_name("tools.yaml")
# Arguments that name a tenant's resource: each must be checked by Toolcore (tenant_arg / channel_arg)
# or declared in target_checks with the reason the target checks it.
TENANT_ARGS = {"microdao_id": "tenant_arg", "channel_id": "channel_arg"}
BUILTIN_PACKAGE = "toolcore.builtin"
# Lambda's function timeout is 30 s (template Globals): every attempt and backoff must fit inside it.
MAX_TOTAL_SECONDS = 25.0
TOOL_ID = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$")
SECRET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_PY_TARGET = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*):([a-z][a-z0-9_]*)$")


class RegistryError(Exception):
    """The registry file is invalid. ``problems`` name the tool and the field of each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid tool registry:\n  " + "\n  ".join(problems))
        self.problems = problems


class Hints(BaseModel):
    """Behaviour hints, published as MCP tool annotations. Only ``idempotent`` tools are retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    read_only: bool = False
    destructive: bool = True  # MCP's default: assume the worst unless the tool says otherwise
    idempotent: bool = False


class SecretSpec(BaseModel):
    """A named credential sent to a tool's target as a header; its value never leaves Toolcore.

    In AWS the value is read from Secrets Manager (the ARN is the entry of ``TOOL_SECRET_ARNS``, a JSON
    object name -> ARN); locally (APP_ENV=local) from the environment variable ``TOOL_SECRET_<NAME>``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str = Field(pattern=r"^[A-Za-z0-9-]{1,100}$")
    prefix: str = ""
    description: str = ""


class ToolConfig(BaseModel):
    """One entry of the file, as written (before variables are substituted)."""

    model_config = ConfigDict(extra="forbid")

    # the original specification's fields
    id: str
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=2000)
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    executor: Literal["http", "python"]
    target: str = Field(min_length=1)
    allowed_agents: list[str] | None  # required: null must be written to allow every agent
    timeout: float = Field(gt=0, le=MAX_TOTAL_SECONDS)
    enabled: bool = True
    # extensions
    allow_all_agents: bool = False  # required with allowed_agents: null on a tool that writes or reads tenant data
    allowed_microdaos: list[str] | None = None
    tenant_arg: str | None = None
    channel_arg: str | None = None
    target_checks: dict[str, str] = Field(default_factory=dict)  # tenant argument -> why the target checks it
    hints: Hints = Field(default_factory=Hints)
    retries: int = Field(default=0, ge=0, le=5)
    max_result_bytes: int = Field(default=256 * 1024, ge=256, le=5 * 1024 * 1024)
    secrets: list[str] = Field(default_factory=list)


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secrets: dict[str, SecretSpec] = Field(default_factory=dict)
    tools: list[dict[str, Any]]


@dataclass(frozen=True)
class Tool:
    """A loaded, validated tool. Validators are compiled once here, not per call."""

    config: ToolConfig
    target: str  # with variables substituted ("" when not configured)
    disabled_reason: str | None
    input_validator: Any
    output_validator: Any | None
    secrets: tuple[tuple[str, SecretSpec], ...] = ()
    function: Callable[..., Any] | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def enabled(self) -> bool:
        return self.config.enabled and self.disabled_reason is None

    @property
    def openai_name(self) -> str:
        """OpenAI function names allow [a-zA-Z0-9_-]{1,64}: dots become a double underscore."""
        return self.config.id.replace(".", "__")

    def allows(self, agent_id: str, microdao_id: str) -> bool:
        """Deny unless both lists admit the caller (None = everyone; an empty list = no one)."""
        agents, daos = self.config.allowed_agents, self.config.allowed_microdaos
        if not agent_id or not microdao_id:
            return False
        if agents is not None and agent_id not in agents:
            return False
        return daos is None or microdao_id in daos


@dataclass(frozen=True)
class Registry:
    tools: dict[str, Tool]
    secrets: dict[str, SecretSpec]
    by_openai_name: dict[str, str]

    def get(self, tool_id: str) -> Tool | None:
        tool = self.tools.get(tool_id)
        if tool is None and tool_id in self.by_openai_name:
            tool = self.tools[self.by_openai_name[tool_id]]
        return tool

    def visible_to(self, agent_id: str, microdao_id: str) -> list[Tool]:
        return [t for t in self.tools.values() if t.enabled and t.allows(agent_id, microdao_id)]


def _validator_for(schema: dict[str, Any]) -> Any:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema, format_checker=FormatChecker())


def _check_schema(schema: Any) -> str | None:
    """None if ``schema`` is a valid JSON Schema (meta-validated), else the reason."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        return "must be a JSON Schema object"
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
    return None


def substitute(target: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${NAME}`` with the environment's value; returns (result, names that are unset or empty)."""
    missing = [name for name in _VARIABLE.findall(target) if not environ.get(name)]
    return _VARIABLE.sub(lambda m: environ.get(m.group(1), ""), target), missing


def resolve_python_target(target: str, package: str = BUILTIN_PACKAGE) -> Callable[..., Any]:
    """The function named ``module:function``, only if it is defined in ``package`` (or a submodule).

    Checked before anything is imported, then again on what was imported: a name merely imported into
    a built-in module (``os.system`` as ``system``) is refused, as is any private name.
    """
    match = _PY_TARGET.match(target)
    if not match:
        raise ValueError("must be 'module:function' with lower-case identifiers")
    module_name, function_name = match.groups()
    if module_name != package and not module_name.startswith(package + "."):
        raise ValueError(f"must name a function in Toolcore's built-in tools package '{package}'")
    module = importlib.import_module(module_name)
    if module.__name__ != module_name:
        raise ValueError("module resolved to a different name")
    function = getattr(module, function_name, None)
    if function is None or not inspect.isfunction(function) or function.__module__ != module_name:
        raise ValueError(f"'{function_name}' is not a function defined in {module_name}")
    return function


def load_registry(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    builtin_package: str = BUILTIN_PACKAGE,
    data: dict[str, Any] | None = None,
) -> Registry:
    """Load and validate the registry (from ``data`` if given, else the YAML/JSON file at ``path``)."""
    environ = os.environ if environ is None else environ
    if data is None:
        import yaml

        data = yaml.safe_load(Path(path or DEFAULT_CONFIG).read_text(encoding="utf-8"))
    try:
        file = RegistryFile.model_validate(data)
    except ValidationError as exc:
        raise RegistryError([f"file: field '{_loc(e['loc'])}': {e['msg']}" for e in exc.errors()]) from exc

    problems: list[str] = []
    for name in file.secrets:
        if not SECRET_NAME.match(name):
            problems.append(f"secret '{name}': name must match {SECRET_NAME.pattern}")
    tools: dict[str, Tool] = {}
    for index, raw in enumerate(file.tools):
        label = f"tool '{raw.get('id')}'" if isinstance(raw, dict) and raw.get("id") else f"tool #{index}"

        def problem(field_name: str, message: str, label: str = label) -> None:
            problems.append(f"{label}: field '{field_name}': {message}")

        if isinstance(raw, dict) and raw.get("executor") not in (None, "http", "python"):
            problem("executor", f"unknown executor {raw.get('executor')!r} (expected 'http' or 'python')")
            continue
        try:
            config = ToolConfig.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                problem(_loc(e["loc"]), e["msg"])
            continue
        if not TOOL_ID.match(config.id) or "__" in config.id or len(config.id.replace(".", "__")) > 64:
            problem("id", f"must match {TOOL_ID.pattern}, without '__', at most 64 characters as an OpenAI name")
        if config.id in tools:
            problem("id", "duplicate id")
            continue
        count = len(problems)
        for field_name in ("input_schema", "output_schema"):
            schema = getattr(config, field_name)
            if schema is None:
                continue
            reason = _check_schema(schema)
            if reason:
                problem(field_name, reason)
        if config.input_schema.get("type") != "object":
            problem("input_schema", "must describe an object (type: object): args are a JSON object")
        required = config.input_schema.get("required") or []
        for field_name in ("tenant_arg", "channel_arg"):
            arg = getattr(config, field_name)
            if arg and arg not in required:
                problem(field_name, f"'{arg}' must be a required property of input_schema")
        properties = config.input_schema.get("properties")
        for arg, check in TENANT_ARGS.items():
            checked = arg in (config.tenant_arg, config.channel_arg) or arg in config.target_checks
            if isinstance(properties, dict) and arg in properties and not checked:
                problem(
                    check,
                    f"argument '{arg}' names a tenant's resource: set {check}: {arg} (Toolcore checks it is "
                    f"the caller's), or say in target_checks why the target checks it",
                )
        for arg, reason in config.target_checks.items():
            if not isinstance(properties, dict) or arg not in properties or not reason.strip():
                problem("target_checks", f"'{arg}' must be an argument of input_schema, with a reason")
        problems.extend(f"{label}: field '{f}': {m}" for f, m in _privilege_problems(config))
        for secret in config.secrets:
            if secret not in file.secrets:
                problem("secrets", f"unknown secret '{secret}' (declared: {sorted(file.secrets) or 'none'})")
        if config.retries and not config.hints.idempotent:
            problem("retries", "only tools with hints.idempotent: true may be retried")
        if config.timeout * (config.retries + 1) + config.retries * 2 > MAX_TOTAL_SECONDS:
            problem("timeout", f"timeout x attempts (+ backoff) exceeds {MAX_TOTAL_SECONDS:g}s")

        target, disabled_reason, function = config.target, None, None
        if config.executor == "http":
            target, missing = substitute(config.target, environ)
            if missing:
                disabled_reason = f"target not configured ({', '.join(missing)} unset)"
            else:
                parts = urlsplit(target)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    problem("target", "must be an http(s) URL with a host")
                elif parts.username or parts.password:
                    problem("target", "must not carry credentials (use secrets)")
                else:
                    try:
                        parts.port  # noqa: B018 - raises on an invalid port
                    except ValueError:
                        problem("target", "has an invalid port")
        else:
            if config.secrets:
                problem("secrets", "python tools run inside Toolcore and take no secrets")
            try:
                function = resolve_python_target(config.target, builtin_package)
            except (ValueError, ImportError) as exc:
                problem("target", str(exc))
        if len(problems) > count:
            continue
        tools[config.id] = Tool(
            config=config,
            target=target,
            disabled_reason=disabled_reason,
            input_validator=_validator_for(config.input_schema),
            output_validator=_validator_for(config.output_schema) if config.output_schema is not None else None,
            secrets=tuple((s, file.secrets[s]) for s in config.secrets),
            function=function,
        )
    if problems:
        raise RegistryError(problems)
    return Registry(
        tools=tools, secrets=dict(file.secrets), by_openai_name={t.openai_name: t.id for t in tools.values()}
    )


def _privilege_problems(config: ToolConfig) -> list[tuple[str, str]]:
    """Least privilege by default: a tool that writes (hints not read_only, or destructive) or that reads
    a tenant's data (tenant_arg, channel_arg, target_checks) must name its agents, or say allow_all_agents: true."""
    if config.allow_all_agents:
        if config.allowed_agents is not None:
            return [("allow_all_agents", "true contradicts a list of allowed_agents (use one or the other)")]
        return []
    if config.allowed_agents is not None:
        return []
    writes = config.hints.destructive or not config.hints.read_only
    if writes:
        what = "is destructive" if config.hints.destructive else "is not read_only"
        return [("allowed_agents", f"null lets every agent call a tool that {what} (hints); list the agents "
                                   "that may call it, or say allow_all_agents: true")]  # fmt: skip
    if config.tenant_arg or config.channel_arg or config.target_checks:
        return [("allowed_agents", "null lets every agent read a tenant's data; list the agents that may call "
                                   "it, or say allow_all_agents: true")]  # fmt: skip
    return []


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"
