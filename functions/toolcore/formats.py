"""The registry as each kind of client reads it: native, OpenAI ``tools=``, MCP ``tools/list``.

No format shows a tool's target, secrets or executor: the agent learns what it may call, not where
the call goes.
"""

from __future__ import annotations

from typing import Any

from daarion_contracts.tools import (
    McpTool,
    McpToolAnnotations,
    McpToolListing,
    NativeTool,
    NativeToolListing,
    OpenAIFunction,
    OpenAITool,
    OpenAIToolListing,
    ToolHints,
)
from toolcore.registry import Tool

# Keywords OpenAI's strict mode (Structured Outputs) accepts; a schema using any other is sent non-strict.
_STRICT_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "description",
     "anyOf", "$defs", "$ref", "title", "pattern", "minimum", "maximum", "exclusiveMinimum",
     "exclusiveMaximum", "multipleOf", "minItems", "maxItems"}
)  # fmt: skip


def native(tool: Tool) -> NativeTool:
    c = tool.config
    return NativeTool(
        id=c.id,
        name=c.name,
        description=c.description,
        input_schema=c.input_schema,
        output_schema=c.output_schema,
        timeout=c.timeout,
        hints=ToolHints(**c.hints.model_dump()),
        max_result_bytes=c.max_result_bytes,
    )


def strict_compatible(schema: Any) -> bool:
    """True if OpenAI's strict mode accepts ``schema`` as it is (we never rewrite a tool's schema):
    every object closes additionalProperties and requires all its properties; known keywords only."""
    if isinstance(schema, list):
        return all(strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if set(schema) - _STRICT_KEYWORDS:
        return False
    types = schema.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in schema
    if is_object:
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False or set(schema.get("required", [])) != set(props):
            return False
        if not all(strict_compatible(p) for p in props.values()):
            return False
    for key in ("items", "anyOf", "$defs"):
        sub = schema.get(key)
        if isinstance(sub, dict) and key == "$defs":
            if not all(strict_compatible(s) for s in sub.values()):
                return False
        elif sub is not None and not strict_compatible(sub):
            return False
    return True


def openai(tool: Tool) -> OpenAITool:
    c = tool.config
    return OpenAITool(
        type="function",
        function=OpenAIFunction(
            name=tool.openai_name,
            description=c.description,
            parameters=c.input_schema,
            strict=strict_compatible(c.input_schema),
        ),
    )


def mcp(tool: Tool) -> McpTool:
    """Serialise with ``exclude_unset=True``: ``outputSchema`` is absent, not null, when there is none."""
    c = tool.config
    more: dict[str, Any] = {}
    if c.output_schema is not None and c.output_schema.get("type") == "object":  # MCP requires an object
        more["outputSchema"] = c.output_schema
    return McpTool(
        name=c.id,
        title=c.name,
        description=c.description,
        inputSchema=c.input_schema,
        annotations=McpToolAnnotations(
            title=c.name,
            readOnlyHint=c.hints.read_only,
            destructiveHint=c.hints.destructive,
            idempotentHint=c.hints.idempotent,
            openWorldHint=c.executor == "http",
        ),
        **more,
    )


def render(tools: list[Tool], fmt: str) -> NativeToolListing | OpenAIToolListing | McpToolListing:
    if fmt == "openai":
        return OpenAIToolListing(
            format="openai",
            tools=[openai(t) for t in tools],
            # OpenAI names cannot hold dots: POST /internal/tools/call accepts either spelling
            tool_ids={t.openai_name: t.id for t in tools},
        )
    if fmt == "mcp":
        return McpToolListing(format="mcp", tools=[mcp(t) for t in tools])
    return NativeToolListing(format="native", tools=[native(t) for t in tools])
