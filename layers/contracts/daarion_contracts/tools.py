"""Toolcore's wire contract: the tool listing (three formats), one tool call, and MCP's entry point.

Requests are :class:`~daarion_contracts.types.WireModel` s (unknown fields refused, text rules on every
string, nesting bounded). Responses keep unknown fields (``extra="allow"``) so an older client reads a
newer service's answers.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from daarion_contracts.types import Identifier, WireModel, check_text

TOOLS_PATH = "/internal/tools"
CALL_PATH = "/internal/tools/call"
MCP_PATH = "/mcp"
HEALTH_PATH = "/internal/tools/health"
OPENAPI_PATH = "/internal/tools/openapi.json"

# A call's arguments and context, as compact UTF-8 JSON: enough for any tool, small enough that checking
# them against the tool's input schema and forwarding them stays far inside the function's timeout.
MAX_ARGS_BYTES = 256 * 1024
MAX_CONTEXT_BYTES = 16 * 1024

TOOL_ERROR_CODES: dict[str, str] = {
    "tool_not_found": "no tool has this id (or OpenAI name)",
    "permission_denied": "the agent or its microDAO may not call this tool (or a tenant argument is not its own)",
    "tool_disabled": "the tool is disabled in the registry or not configured here",
    "invalid_args": "`args` do not match the tool's `input_schema` (or the idempotency key was used with other args)",
    "timeout": "the tool did not answer within its `timeout`",
    "upstream_error": "the tool's target failed, refused the call, or could not be reached",
    "internal": "Toolcore could not run the call (credentials, idempotency store, a bug); it was logged",
    "invalid_result": "the tool answered with something that is not JSON or does not match its `output_schema`",
}
"""The ``error.code`` values of a tool call's reply (HTTP 200), with what each means."""


def _json_size(value: Any, limit: int) -> Any:
    """Reject what is not JSON (NaN, Infinity) and what is larger than ``limit`` bytes once encoded."""
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        raise ValueError("must be JSON (NaN and Infinity are not JSON numbers)") from None
    if len(encoded) > limit:
        raise ValueError(f"is {len(encoded)} bytes of JSON; at most {limit}")
    return value


def _bounded_args(value: dict[str, Any]) -> dict[str, Any]:
    return _json_size(value, MAX_ARGS_BYTES)  # type: ignore[no-any-return]


def _bounded_context(value: ToolCallContext | None) -> ToolCallContext | None:
    if value is not None:
        _json_size(value.model_dump(exclude_unset=True), MAX_CONTEXT_BYTES)
    return value


ToolArgs = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_args),
    Field(description=f"Checked against the tool's `input_schema`; at most {MAX_ARGS_BYTES} bytes of JSON."),
]


# ---------------------------------------------------------------- POST /internal/tools/call


class ToolCallContext(WireModel):
    """What the caller says about the call's situation; passed on to the tool's target. Advisory only:
    Toolcore sets ``agent_id``, ``microdao_id``, ``tool_id`` and ``request_id`` itself, over anything sent."""

    model_config = ConfigDict(extra="allow")

    channel_id: Identifier | None = Field(default=None, description="The channel the agent is answering in.")


class ToolCallRequest(WireModel):
    """``POST /internal/tools/call``. ``context`` is advisory: the verified identity overrides it."""

    tool_id: Identifier = Field(description="The tool's id, or its OpenAI name (`projects__list` for `projects.list`).")
    agent_id: Identifier
    microdao_id: Identifier
    args: ToolArgs = Field(default_factory=dict)
    context: Annotated[ToolCallContext | None, AfterValidator(_bounded_context)] = Field(
        default=None, description=f"At most {MAX_CONTEXT_BYTES} bytes of JSON."
    )
    idempotency_key: Identifier | None = Field(
        default=None,
        description="Run at most once per (tool, agent, microDAO, key): a repeat returns the first successful result.",
    )


class _Answer(BaseModel):
    """Base of the response models: unknown fields kept, so a client reads a newer service's answers."""

    model_config = ConfigDict(extra="allow")


class ToolCallError(_Answer):
    code: str = Field(description="One of: " + "; ".join(f"`{c}`: {what}" for c, what in TOOL_ERROR_CODES.items()))
    message: str = Field(description="A human sentence, safe to show the agent (never a secret).")


class ToolCallResponse(_Answer):
    """``POST /internal/tools/call``'s reply, HTTP 200 whatever the tool did: a tool's own failure is
    ``ok: false`` with ``error`` (codes: ``tool_not_found``, ``permission_denied``, ``tool_disabled``,
    ``invalid_args``, ``timeout``, ``upstream_error``, ``internal``, ``invalid_result``), not an HTTP error.
    HTTP 4xx/5xx are about the request itself (secret, body)."""

    ok: bool
    result: Any = Field(default=None, description="The tool's JSON result when `ok`; null otherwise.")
    error: ToolCallError | None = Field(default=None, description="Why the call failed, when not `ok`.")
    tool_id: str = Field(description="The tool's canonical id (also when it was called by its OpenAI name).")
    latency_ms: float = Field(description="Time the call took inside Toolcore, in milliseconds.")
    truncated: bool = Field(
        default=False,
        description="Present (true) only when the result exceeded the tool's `max_result_bytes`: `result` is then "
        "the first bytes as a string.",
    )
    idempotent_replay: bool = Field(
        default=False, description="Present (true) only when this is the stored result of an earlier call with the key."
    )

    def to_body(self) -> dict[str, Any]:
        """The JSON body: ``truncated`` and ``idempotent_replay`` appear only when true."""
        omit = {name for name in ("truncated", "idempotent_replay") if not getattr(self, name)}
        return self.model_dump(mode="json", exclude=omit)


# ---------------------------------------------------------------- GET /internal/tools


class ToolHints(_Answer):
    read_only: bool
    destructive: bool
    idempotent: bool = Field(description="Only idempotent tools are retried by Toolcore.")


class NativeTool(_Answer):
    """A tool in Toolcore's own format (the registry's fields an agent may see: no target, no secrets)."""

    id: str
    name: str
    description: str
    input_schema: dict[str, Any] = Field(description="JSON Schema of `args`.")
    output_schema: dict[str, Any] | None = Field(description="JSON Schema of `result`, when the tool declares one.")
    timeout: float = Field(description="Seconds one attempt may take.")
    hints: ToolHints
    max_result_bytes: int


class OpenAIFunction(_Answer):
    name: str = Field(description="The tool's id with dots as `__` (OpenAI names allow `[a-zA-Z0-9_-]`).")
    description: str
    parameters: dict[str, Any] = Field(description="The tool's `input_schema`, unchanged.")
    strict: bool = Field(description="True when the schema is compatible with OpenAI's strict mode as it is.")


class OpenAITool(_Answer):
    """One entry of OpenAI's ``tools=`` parameter."""

    type: Literal["function"] = "function"
    function: OpenAIFunction


class McpToolAnnotations(_Answer):
    title: str
    readOnlyHint: bool
    destructiveHint: bool
    idempotentHint: bool
    openWorldHint: bool


class McpTool(_Answer):
    """One tool as MCP's ``tools/list`` describes it."""

    name: str
    title: str
    description: str
    inputSchema: dict[str, Any]
    annotations: McpToolAnnotations
    outputSchema: dict[str, Any] | None = Field(
        default=None, description="Present only when the tool's output schema is an object (MCP requires one)."
    )


class NativeToolListing(_Answer):
    """``GET /internal/tools?format=native``."""

    format: Literal["native"] = "native"
    tools: list[NativeTool]


class OpenAIToolListing(_Answer):
    """``GET /internal/tools?format=openai``: ``tools`` for OpenAI's ``tools=`` and ``tool_ids``, the OpenAI
    name -> tool id map (``POST /internal/tools/call`` accepts either spelling)."""

    format: Literal["openai"] = "openai"
    tools: list[OpenAITool] = Field(default_factory=list)
    tool_ids: dict[str, str] = Field(default_factory=dict)


class McpToolListing(_Answer):
    """``GET /internal/tools?format=mcp``."""

    format: Literal["mcp"] = "mcp"
    tools: list[McpTool]


ToolListingResponse = Annotated[NativeToolListing | OpenAIToolListing | McpToolListing, Field(discriminator="format")]
"""``GET /internal/tools``'s reply: one shape per ``format``, told apart by the ``format`` field."""


# ---------------------------------------------------------------- POST /mcp (JSON-RPC 2.0)

_RpcText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_text)]


def _rpc_id(value: Any) -> int | str:
    if isinstance(value, str):
        if len(value) > 200:
            raise ValueError("must be at most 200 characters")
        return check_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("must be an integer or a string (MCP: never null)")


RpcId = Annotated[
    int | str,
    PlainValidator(_rpc_id),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 200}]}),
]


def _no_default_in_schema(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class JsonRpcRequest(BaseModel):
    """One JSON-RPC 2.0 message posted to ``/mcp``: a request (with ``id``) or a notification (without).

    Batches are not supported. ``params`` is checked per method (``tools/call``: :class:`McpToolCallParams`).
    """

    model_config = ConfigDict(extra="ignore")

    jsonrpc: Literal["2.0"]
    id: RpcId = Field(
        default=None,
        description="Absent for a notification (answered 202, no body); never null.",
        json_schema_extra=_no_default_in_schema,
    )
    method: _RpcText
    params: dict[str, Any] | None = None


class McpCallMeta(WireModel):
    model_config = ConfigDict(extra="allow")

    idempotency_key: Identifier | None = None


class McpToolCallParams(WireModel):
    """``params`` of MCP's ``tools/call``; identity comes from the ``X-Agent-Id``/``X-Microdao-Id`` headers."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: Identifier
    arguments: ToolArgs | None = None
    meta: McpCallMeta | None = Field(default=None, alias="_meta")


class JsonRpcError(_Answer):
    code: int = Field(description="-32700 parse error, -32600 invalid request, -32601 method not found, "
                      "-32602 invalid params.")  # fmt: skip
    message: str
    data: Any = Field(default=None, description="For invalid params or headers: `{fields: [{field, message}]}`.")


class JsonRpcResponse(_Answer):
    """A JSON-RPC 2.0 response: ``result`` or ``error``. ``id`` is null only when the message could not be read."""

    jsonrpc: Literal["2.0"] = "2.0"
    id: int | str | None
    result: dict[str, Any] | None = None
    error: JsonRpcError | None = None
