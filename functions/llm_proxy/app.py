"""LLM Proxy HTTP function: FastAPI app and its Lambda handler.

Routes: the agent-runtime contract (``POST /internal/llm/proxy``), the OpenAI-compatible surface
(``/v1/chat/completions`` incl. ``stream: true``, ``/v1/models``, ``/v1/embeddings``), the Memory
Orchestrator's embeddings (``POST /internal/llm/embeddings``) and the model catalogue
(``GET /internal/llm/models``). Every authenticated call to a chat or embeddings route sends exactly one
usage event, success or failure, before the response returns.
"""

from __future__ import annotations

import base64
import gc
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Body, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from daarion_common import usage
from daarion_common.errors import ApiError, request_id_of
from daarion_common.http_app import create_app, lambda_handler
from daarion_common.observability import MetricUnit, logger, metrics
from daarion_common.settings import get_settings
from daarion_contracts.llm import ChatCompletionRequest, EmbeddingsRequest, InternalEmbeddingsRequest, ProxyRequest
from llm_proxy import providers, service
from llm_proxy.config import get_config
from llm_proxy.service import CallContext
from llm_proxy.usage_api import router as usage_router

M = TypeVar("M", bound=BaseModel)
# The raw JSON body: validated by the routes themselves, so a malformed call is still counted.
JsonBody = Annotated[Any, Body()]
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|.*\[.*\].*)$")

app = create_app(
    "llm-proxy",
    openapi_path="/internal/llm/openapi.json",
    health_path="/internal/llm/health",
    description="Logical-to-physical model routing, fallbacks, rate limits, usage and cost.",
)


class BearerAsInternalSecret:
    """OpenAI-compatible clients can only send ``Authorization: Bearer <key>``: on ``/v1/`` paths the
    bearer token stands for ``X-Internal-Secret`` (when that header is absent), checked the same way."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = scope.get("headers", [])
            if not any(k == b"x-internal-secret" for k, _ in headers):
                for key, value in headers:
                    if key == b"authorization" and value[:7].lower() == b"bearer ":
                        scope = dict(scope, headers=[*headers, (b"x-internal-secret", value[7:].strip())])
                        break
        await self.app(scope, receive, send)


app.add_middleware(BearerAsInternalSecret)


# Routes are `async def` and call the (blocking) provider SDK and boto3 inline: a Lambda environment serves
# one request at a time, and a thread-pool hop per request (what a sync route costs under Mangum) would
# be most of the proxy's own overhead.


# ---------------------------------------------------------------------------- helpers
def _parse(model: type[M], payload: Any) -> M:
    """Validate ``payload`` into ``model``; errors become the usual 422 naming the field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors, seen = [], set()
        for error in exc.errors(include_url=False):
            # a union field reports one error per member type ('str', 'list[...]'): name the field once
            loc = tuple(p for p in error.get("loc", ()) if not (isinstance(p, str) and _UNION_TAG.match(p)))
            if loc not in seen:
                seen.add(loc)
                errors.append({**error, "loc": ("body", *loc)})
        raise RequestValidationError(errors) from None


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value.strip() if value and value.strip() else None


def _context(request: Request, payload: Any, *, call_kind: str = "chat") -> CallContext:
    """Who is calling, from ``metadata`` or the X-Agent-Id / X-Microdao-Id headers (best effort, so that
    even a malformed call is counted; ``unknown`` when it cannot be told)."""
    body = payload if isinstance(payload, dict) else {}
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}

    def pick(key: str, header: str) -> str | None:
        value = meta.get(key)
        value = value if isinstance(value, str) and value.strip() else _header(request, header)
        return value[:200] if value else None

    model = body.get("model") if isinstance(body.get("model"), str) and body.get("model") else None
    if model is None and call_kind == "embeddings":
        model = get_config().default_embedding_model
    ctx = CallContext(
        request_id=request_id_of(request) or str(uuid.uuid4()),
        agent_id=pick("agent_id", "x-agent-id") or "unknown",
        microdao_id=pick("microdao_id", "x-microdao-id") or "unknown",
        channel_id=pick("channel_id", "x-channel-id"),
        model=(model or "unknown")[:200],
        call_kind=call_kind,
    )
    lambda_context = request.scope.get("aws.context")
    total = get_config().retry.total_timeout_s
    if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
        # leave a second to send the usage event and the response
        total = min(total, max(0.5, lambda_context.get_remaining_time_in_millis() / 1000 - 1.0))
    ctx.deadline = ctx.started + total
    return ctx


def _require_caller(ctx: CallContext) -> None:
    missing = [f for f, v in (("agent_id", ctx.agent_id), ("microdao_id", ctx.microdao_id)) if v == "unknown"]
    if missing:
        fields = [
            {"field": f"metadata.{f}", "message": f"required (or the X-{f.split('_')[0].title()}-Id header)"}
            for f in missing
        ]
        raise ApiError(
            422,
            "invalid_request",
            "Invalid request: " + "; ".join(f"{x['field']}: {x['message']}" for x in fields),
            fields=fields,
        )


def _emit(ctx: CallContext, status: str, error_code: str | None) -> None:
    metrics.add_metric(name="LlmCalls", unit=MetricUnit.Count, value=1)
    if ctx.fallback_used:
        metrics.add_metric(name="LlmFallbacks", unit=MetricUnit.Count, value=1)
    if error_code == "rate_limited":
        metrics.add_metric(name="LlmRateLimited", unit=MetricUnit.Count, value=1)
    elif error_code in ("upstream_error", "upstream_timeout", "stream_interrupted"):
        metrics.add_metric(name="LlmUpstreamFailures", unit=MetricUnit.Count, value=1)
    started = time.perf_counter()
    usage.emit(ctx.event(status, error_code))
    if get_settings().usage_queue_url:  # an SQS SendMessage was attempted
        ctx.aws_calls += 1
        ctx.aws_ms += (time.perf_counter() - started) * 1000


@contextmanager
def _recorded(ctx: CallContext) -> Iterator[None]:
    """Exactly one usage event per call: ``ok`` on return, ``error`` with the code on any failure."""
    try:
        yield
    except ApiError as exc:
        _emit(ctx, "error", exc.code)
        raise
    except RequestValidationError:
        _emit(ctx, "error", "invalid_request")
        raise
    except Exception:
        _emit(ctx, "error", "internal")
        raise
    else:
        if not ctx.streamed:
            _emit(ctx, "ok", None)


def _timing_headers(ctx: CallContext) -> dict[str, str]:
    total = ctx.latency_ms()
    return {
        "Server-Timing": f"total;dur={total:.3f}, upstream;dur={ctx.upstream_ms:.3f}, "
        f'aws;dur={ctx.aws_ms:.3f};desc="{ctx.aws_calls} calls"',
        "X-LLM-Provider": ctx.provider or "",
        "X-LLM-Model-Resolved": ctx.model_resolved or "",
        "X-LLM-Fallback": "true" if ctx.fallback_used else "false",
        "X-Request-Id": ctx.request_id,
    }


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


# ---------------------------------------------------------------------------- the contract
@app.post("/internal/llm/proxy")
async def proxy(request: Request, payload: JsonBody) -> JSONResponse:
    ctx = _context(request, payload)
    with _recorded(ctx):
        call = _parse(ProxyRequest, payload)
        body: dict[str, Any] = {"messages": _messages(call.messages)}
        for key in ("max_tokens", "temperature", "top_p", "tools", "tool_choice", "response_format"):
            value = getattr(call, key)
            if value is not None:
                body[key] = value
        result = service.chat(ctx, body)
    choice = (result.data.get("choices") or [{}])[0] or {}
    message = choice.get("message") or {}
    reply: dict[str, Any] = {
        "content": message.get("content") or "",
        "usage": {
            "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": ctx.completion_tokens,
            "total_tokens": ctx.prompt_tokens + ctx.completion_tokens,
        },
        "provider": ctx.provider,
        "model": ctx.model,
        "model_resolved": ctx.model_resolved,
        "latency_ms": round(ctx.latency_ms(), 3),
        "cost_usd": round(ctx.cost_usd, 10),
        "finish_reason": choice.get("finish_reason"),
        "fallback_used": ctx.fallback_used,
        "request_id": ctx.request_id,
    }
    if message.get("tool_calls"):
        reply["tool_calls"] = message["tool_calls"]
    return JSONResponse(reply, headers=_timing_headers(ctx))


# ---------------------------------------------------------------------------- OpenAI-compatible
@app.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request, payload: JsonBody) -> JSONResponse | StreamingResponse:
    ctx = _context(request, payload)
    with _recorded(ctx):
        call = _parse(ChatCompletionRequest, payload)
        _require_caller(ctx)
        body = call.model_dump(exclude_none=True, exclude={"model", "metadata", "stream", "stream_options"})
        body["messages"] = _messages(call.messages)
        if call.stream:
            include_usage = bool((call.stream_options or {}).get("include_usage"))
            opened = service.chat_stream(ctx, body)
            return StreamingResponse(
                _relay(ctx, opened, body, include_usage),
                media_type="text/event-stream",
                headers={**_timing_headers(ctx), "Cache-Control": "no-cache"},
            )
        result = service.chat(ctx, body)
    return JSONResponse(result.data, headers=_timing_headers(ctx))


async def _relay(
    ctx: CallContext, opened: service.ChatStream, body: dict[str, Any], include_usage: bool
) -> AsyncIterator[str]:
    """Relay the upstream's SSE lines, count the completion, and send the usage event at the end."""
    content: list[str] = []
    usage_seen: dict[str, Any] | None = None
    error_code: str | None = None
    try:
        for line in opened.lines:
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if chunk.get("usage"):
                usage_seen = chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    content.append(delta["content"])
                for tool_call in delta.get("tool_calls") or []:
                    content.append(str((tool_call.get("function") or {}).get("arguments") or ""))
            if not chunk.get("choices") and chunk.get("usage") and not include_usage:
                continue  # we asked the upstream for usage; the caller did not
            if not include_usage and "usage" in chunk:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
            yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the upstream broke off mid-stream: tell the client in-band, count it
        error_code = "stream_interrupted"
        logger.warning("upstream stream interrupted", extra={"error_type": type(exc).__name__})
        error = {"error": {"code": error_code, "message": "The upstream stream was interrupted."}}
        yield f"data: {json.dumps(error)}\n\n"
    finally:
        opened.close()
        service.finish_stream(
            ctx, opened.candidate, providers.messages_text(body["messages"]), "".join(content), usage_seen
        )
        _emit(ctx, "error" if error_code else "ok", error_code)


@app.get("/v1/models")
async def v1_models() -> dict[str, Any]:
    config = get_config()
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": model.provider}
        for name, model in sorted(config.models.items())
    ]
    return {"object": "list", "data": data}


def _embed(ctx: CallContext, texts: list[str], input_type: str) -> dict[str, Any]:
    return service.embeddings(ctx, texts, input_type)


@app.post("/v1/embeddings")
async def v1_embeddings(request: Request, payload: JsonBody) -> JSONResponse:
    ctx = _context(request, payload, call_kind="embeddings")
    with _recorded(ctx):
        call = _parse(EmbeddingsRequest, payload)
        _require_caller(ctx)
        texts = [call.input] if isinstance(call.input, str) else call.input
        out = _embed(ctx, texts, call.input_type)
    data = []
    for index, vector in enumerate(out["vectors"]):
        if call.encoding_format == "base64":
            import numpy as np

            encoded: Any = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    body = {
        "object": "list",
        "data": data,
        "model": ctx.model,
        "usage": {"prompt_tokens": ctx.prompt_tokens, "total_tokens": ctx.prompt_tokens},
    }
    return JSONResponse(body, headers=_timing_headers(ctx))


@app.post("/internal/llm/embeddings")
async def internal_embeddings(request: Request, payload: JsonBody) -> JSONResponse:
    ctx = _context(request, payload, call_kind="embeddings")
    with _recorded(ctx):
        call = _parse(InternalEmbeddingsRequest, payload)
        out = _embed(ctx, call.input, call.input_type)
    vectors = out["vectors"]
    body = {
        "embeddings": vectors,
        "model": ctx.model,
        "model_resolved": ctx.model_resolved,
        "provider": ctx.provider,
        "dimensions": len(vectors[0]) if vectors else 0,
        "usage": {"prompt_tokens": ctx.prompt_tokens, "total_tokens": ctx.prompt_tokens},
        "cost_usd": round(ctx.cost_usd, 10),
        "request_id": ctx.request_id,
    }
    return JSONResponse(body, headers=_timing_headers(ctx))


@app.get("/internal/llm/models")
async def internal_models() -> dict[str, Any]:
    """Logical models: provider, physical name, prices, fallbacks, and whether the provider is configured."""
    config = get_config()
    local = get_settings().is_local
    out = []
    for name, model in sorted(config.models.items()):
        acc = providers.access(model.provider, config.providers[model.provider])
        entry: dict[str, Any] = {
            "model": name,
            "kind": model.kind,
            "provider": model.provider,
            "physical": model.physical,
            "price_in_usd_per_1m": model.price_in,
            "price_out_usd_per_1m": model.price_out,
            "max_tokens": model.max_tokens,
            "timeout_s": model.timeout_s,
            "fallbacks": model.fallbacks,
            "configured": acc.configured,
            "circuit": providers.breaker.state(model.provider),
        }
        if model.dimensions:
            entry["dimensions"] = model.dimensions
        if not acc.configured:
            entry["missing"] = acc.missing
            entry["served_by"] = "offline" if local and model.kind == "chat" else None
        out.append(entry)
    return {"models": out, "default_embedding_model": config.default_embedding_model}


app.include_router(usage_router)

handler = lambda_handler(app)

# End of the init phase: what is loaded now lives as long as the container; keep the collector from
# rescanning it on every request (tail latency).
gc.freeze()
