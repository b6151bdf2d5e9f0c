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
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema

from daarion_common import usage
from daarion_common.errors import ApiError, request_id_of
from daarion_common.http_app import create_app, lambda_handler
from daarion_common.observability import MetricUnit, logger, metrics
from daarion_common.settings import get_settings
from daarion_contracts import errors
from daarion_contracts.llm import (
    AGENT_HEADER,
    CHANNEL_HEADER,
    EMBEDDINGS_PATH,
    HEALTH_PATH,
    MAX_BODY_BYTES,
    MAX_EMBEDDING_CHARS,
    MAX_EMBEDDING_INPUTS,
    MAX_LOCAL_EMBEDDING_CHARS,
    MAX_LOCAL_EMBEDDING_TOKENS,
    MICRODAO_HEADER,
    MODELS_PATH,
    OPENAPI_PATH,
    PROXY_PATH,
    V1_CHAT_PATH,
    V1_EMBEDDINGS_PATH,
    V1_MODELS_PATH,
    ChatCompletion,
    ChatCompletionRequest,
    Embedding,
    EmbeddingList,
    EmbeddingsRequest,
    EmbeddingUsage,
    InternalEmbeddings,
    InternalEmbeddingsRequest,
    ModelCard,
    ModelCatalogue,
    ModelInfo,
    ModelList,
    ProxyRequest,
    ProxyResponse,
    TokenUsage,
)
from daarion_contracts.types import Identifier
from llm_proxy import providers, service
from llm_proxy.config import get_config
from llm_proxy.service import CallContext
from llm_proxy.usage_api import router as usage_router

M = TypeVar("M", bound=BaseModel)
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|.*\[.*\].*)$")
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
UNKNOWN = "unknown"  # the usage event's caller when it cannot be told (absent or invalid)

app = create_app(
    "llm-proxy",
    openapi_path=OPENAPI_PATH,
    health_path=HEALTH_PATH,
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


# ---------------------------------------------------------------------------- the OpenAPI document
# The chat and embeddings routes read their raw body themselves (so that even a malformed call is
# counted by a usage event); the document still describes each body with its contract model.
_REQUEST_MODELS: list[type[BaseModel]] = [
    ProxyRequest,
    ChatCompletionRequest,
    EmbeddingsRequest,
    InternalEmbeddingsRequest,
]
_CALLER_HEADERS = (
    f"The caller is `metadata.agent_id` / `metadata.microdao_id` (`channel_id`), or the `{AGENT_HEADER}` / "
    f"`{MICRODAO_HEADER}` (`{CHANNEL_HEADER}`) headers, validated like any identifier."
)


def _body(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _openapi() -> dict[str, Any]:
    if app.openapi_schema is None:
        document = FastAPI.openapi(app)
        _, defs = models_json_schema(
            [(m, "validation") for m in _REQUEST_MODELS], ref_template="#/components/schemas/{model}"
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in defs.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        app.openapi_schema = document
    return app.openapi_schema


app.openapi = _openapi  # type: ignore[method-assign]

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
_CALL_ERRORS: dict[int, list[str]] = {
    400: ["invalid_json", "upstream_rejected_request"],
    401: ["unauthorized"],
    404: ["model_not_found"],
    413: ["payload_too_large", "upstream_rejected_request", "request_over_limit"],
    422: ["invalid_request"],
    429: ["rate_limited"],
    502: ["upstream_error"],
    503: [
        "auth_unconfigured",
        "provider_unconfigured",
        "provider_unavailable",
        "limiter_busy",
        "limiter_unconfigured",
        "limiter_unavailable",
    ],
    504: ["upstream_timeout"],
}


def _errors(codes: dict[int, list[str]]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for these statuses, each listing only the codes this service answers with."""
    described = {
        f"r{status}": "; ".join(f"`{c}`: {errors.CODES[status][c]}" for c in names) for status, names in codes.items()
    }
    out = errors.responses(*codes, **described)
    for status in (429, 503):
        if status in out:
            out[status]["headers"] = _RETRY_AFTER
    return out


# With `stream: true`: Server-Sent Events; in OpenAPI 3.1 the media type's schema describes one event.
_SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "description": "One Server-Sent Event (with `stream: true`).",
            "properties": {
                "data": {
                    "type": "string",
                    "description": 'A JSON `chat.completion.chunk`; an in-band `{"error": {code, message}}` if the '
                    "upstream broke off; `[DONE]` last.",
                },
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer"},
            },
            "required": ["data"],
        }
    }
}


# ---------------------------------------------------------------------------- helpers
def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")


def _parse(model: type[M], payload: Any, more: list[dict[str, Any]] | None = None) -> M:
    """Validate ``payload`` into ``model``; errors (and ``more``) become the usual 422 naming each field."""
    errors_: list[dict[str, Any]] = []
    try:
        parsed = model.model_validate(payload)
    except ValidationError as exc:
        seen = set()
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            # a union field reports one error per member type ('str', 'list[...]'): name the field once
            loc = tuple(p for p in error.get("loc", ()) if not (isinstance(p, str) and _UNION_TAG.match(p)))
            if loc not in seen:
                seen.add(loc)
                errors_.append({**error, "loc": ("body", *loc), "msg": _clean(str(error.get("msg", "")))})
        parsed = None
    named = {tuple(e["loc"]) for e in errors_}
    errors_ += [e for e in more or [] if tuple(e["loc"]) not in named]
    if errors_ or parsed is None:
        raise RequestValidationError(errors_)
    return parsed


async def _read(request: Request) -> tuple[Any, ApiError | None]:
    """The raw body as JSON, or why it cannot be (raised once the call is being counted)."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return None, ApiError(
            413, "payload_too_large", f"The body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted."
        )
    if not raw.strip():
        return None, None  # validation names the missing body
    try:
        return json.loads(raw), None
    except RecursionError:
        message = "the JSON is nested too deeply"
        return None, ApiError(422, "invalid_request", f"Invalid request: body: {message}",
                              fields=[{"field": "body", "message": message}])  # fmt: skip
    except ValueError:
        return None, ApiError(400, "invalid_json", "The request body is not valid JSON.")


def _identifier(value: Any) -> tuple[str | None, str | None]:
    """(the value if it is a valid identifier, else why not)."""
    if not isinstance(value, str):
        return None, "must be a string (headers: valid UTF-8)"
    try:
        return _IDENTIFIER.validate_python(value), None
    except ValidationError as exc:
        return None, _clean(exc.errors(include_url=False)[0]["msg"])


def _utf8(header: str) -> Any:
    """A header's bytes as UTF-8 (ASGI hands them over as latin-1); None (invalid) if they are not UTF-8."""
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def _context(
    request: Request, payload: Any, *, call_kind: str = "chat", free_metadata: bool = False
) -> tuple[CallContext, list[dict[str, Any]], set[str]]:
    """Who is calling, from ``metadata`` or the X-Agent-Id / X-Microdao-Id / X-Channel-Id headers, and what
    is wrong with those ids. Best effort, so that even a malformed call is counted: an absent or invalid id
    is recorded as ``unknown`` (never copied into the usage event). The headers are always validated; the
    ``metadata`` ids too when the route's model leaves ``metadata`` free-form (``free_metadata``)."""
    body = payload if isinstance(payload, dict) else {}
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    problems: list[dict[str, Any]] = []
    named: set[str] = set()  # the ids given at all, valid or not

    def pick(key: str, header: str) -> str | None:
        raw_header = request.headers.get(header)
        from_header = None
        if raw_header or meta.get(key) is not None:
            named.add(key)
        if raw_header:  # an empty header is no header
            from_header, why = _identifier(_utf8(raw_header))
            if why:
                problems.append({"loc": ("header", header), "msg": why, "type": "invalid_identifier"})
        if meta.get(key) is not None:
            value, why = _identifier(meta[key])
            if why and free_metadata:
                problems.append({"loc": ("body", "metadata", key), "msg": why, "type": "invalid_identifier"})
            return value
        return from_header

    model, _ = _identifier(body.get("model"))
    if model is None and call_kind == "embeddings" and body.get("model") is None:
        model = get_config().default_embedding_model
    ctx = CallContext(
        request_id=request_id_of(request) or str(uuid.uuid4()),
        agent_id=pick("agent_id", AGENT_HEADER) or UNKNOWN,
        microdao_id=pick("microdao_id", MICRODAO_HEADER) or UNKNOWN,
        channel_id=pick("channel_id", CHANNEL_HEADER),
        model=model or UNKNOWN,
        call_kind=call_kind,
    )
    lambda_context = request.scope.get("aws.context")
    total = get_config().retry.total_timeout_s
    if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
        # leave a second to send the usage event and the response
        total = min(total, max(0.5, lambda_context.get_remaining_time_in_millis() / 1000 - 1.0))
    ctx.deadline = ctx.started + total
    return ctx, problems, named


def _require_caller(named: set[str]) -> None:
    """The OpenAI-compatible routes: the caller must be named (metadata or headers)."""
    missing = [f for f in ("agent_id", "microdao_id") if f not in named]
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


def _reply(model: BaseModel, ctx: CallContext) -> JSONResponse:
    """A body built from its contract model (fields left unset are left out), with the timing headers."""
    return JSONResponse(model.model_dump(mode="json", exclude_unset=True), headers=_timing_headers(ctx))


# ---------------------------------------------------------------------------- the contract
@app.post(
    PROXY_PATH,
    response_model=ProxyResponse,
    responses=_errors(_CALL_ERRORS),
    openapi_extra=_body(ProxyRequest),
    summary="One chat call (agent-runtime's contract)",
    description="Routes the logical `model` to its provider (fallbacks, retries, circuit breaker), within the "
    "caller's limits; every call, failed or not, is one usage event.",
)
async def proxy(request: Request) -> JSONResponse:
    payload, unreadable = await _read(request)
    ctx, problems, _named = _context(request, payload)
    with _recorded(ctx):
        if unreadable:
            raise unreadable
        call = _parse(ProxyRequest, payload, problems)
        body: dict[str, Any] = {"messages": _messages(call.messages)}
        for key in ("max_tokens", "temperature", "top_p", "tools", "tool_choice", "response_format"):
            value = getattr(call, key)
            if value is not None:
                body[key] = value
        result = service.chat(ctx, body)
    choice = (result.data.get("choices") or [{}])[0] or {}
    message = choice.get("message") or {}
    reply = ProxyResponse(
        content=message.get("content") or "",
        usage=TokenUsage(
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
            total_tokens=ctx.prompt_tokens + ctx.completion_tokens,
        ),
        provider=ctx.provider,
        model=ctx.model,
        model_resolved=ctx.model_resolved,
        latency_ms=round(ctx.latency_ms(), 3),
        cost_usd=round(ctx.cost_usd, 10),
        finish_reason=choice.get("finish_reason"),
        fallback_used=ctx.fallback_used,
        request_id=ctx.request_id,
    )
    if message.get("tool_calls"):
        reply.tool_calls = message["tool_calls"]
    return _reply(reply, ctx)


# ---------------------------------------------------------------------------- OpenAI-compatible
@app.post(
    V1_CHAT_PATH,
    response_model=ChatCompletion,
    responses={200: {"content": _SSE}, **_errors(_CALL_ERRORS)},
    openapi_extra=_body(ChatCompletionRequest),
    summary="OpenAI-compatible chat completion",
    description="OpenAI's `chat.completion`, the provider's answer passed through; unknown request fields are "
    "forwarded. `stream: true` answers `text/event-stream` (an upstream failure mid-stream is an in-band "
    '`data: {"error": ...}` line). ' + _CALLER_HEADERS,
)
async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
    payload, unreadable = await _read(request)
    ctx, problems, named = _context(request, payload, free_metadata=True)
    with _recorded(ctx):
        if unreadable:
            raise unreadable
        call = _parse(ChatCompletionRequest, payload, problems)
        _require_caller(named)
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
        try:
            ChatCompletion.model_validate(result.data)
        except ValidationError:
            raise ApiError(
                502,
                "upstream_error",
                f"{ctx.provider}'s answer is not an OpenAI chat.completion.",
                extra={"providers": [{"provider": ctx.provider, "model": ctx.model, "error": "malformed answer"}]},
            ) from None
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
        service.finish_stream(ctx, opened.candidate, body, "".join(content), usage_seen)
        _emit(ctx, "error" if error_code else "ok", error_code)


@app.get(
    V1_MODELS_PATH,
    response_model=ModelList,
    responses=_errors({401: ["unauthorized"], 503: ["auth_unconfigured"]}),
    summary="The logical models (OpenAI's list shape)",
)
async def v1_models() -> ModelList:
    config = get_config()
    return ModelList(
        data=[ModelCard(id=name, owned_by=model.provider) for name, model in sorted(config.models.items())]
    )


_EMBEDDING_BOUNDS = (
    f"At most {MAX_EMBEDDING_INPUTS} inputs and {MAX_EMBEDDING_CHARS:,} characters in all (422 naming `input`); "
    f"the in-process model (`multilingual-e5-small`) at most {MAX_LOCAL_EMBEDDING_CHARS:,} characters and "
    f"{MAX_LOCAL_EMBEDDING_TOKENS:,} tokens in all (413 `payload_too_large` naming `input`)."
)


def _embed(ctx: CallContext, texts: list[str], input_type: str) -> dict[str, Any]:
    return service.embeddings(ctx, texts, input_type)


@app.post(
    V1_EMBEDDINGS_PATH,
    response_model=EmbeddingList,
    responses=_errors(_CALL_ERRORS),
    openapi_extra=_body(EmbeddingsRequest),
    summary="OpenAI-compatible embeddings",
    description=_EMBEDDING_BOUNDS + " " + _CALLER_HEADERS,
)
async def v1_embeddings(request: Request) -> JSONResponse:
    payload, unreadable = await _read(request)
    ctx, problems, named = _context(request, payload, call_kind="embeddings", free_metadata=True)
    with _recorded(ctx):
        if unreadable:
            raise unreadable
        call = _parse(EmbeddingsRequest, payload, problems)
        _require_caller(named)
        texts = [call.input] if isinstance(call.input, str) else call.input
        out = _embed(ctx, texts, call.input_type)
    data = []
    for index, vector in enumerate(out["vectors"]):
        if call.encoding_format == "base64":
            import numpy as np

            encoded: Any = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        else:
            encoded = vector
        data.append(Embedding(index=index, embedding=encoded))
    body = EmbeddingList(
        data=data,
        model=ctx.model,
        usage=EmbeddingUsage(prompt_tokens=ctx.prompt_tokens, total_tokens=ctx.prompt_tokens),
    )
    return JSONResponse(body.model_dump(mode="json"), headers=_timing_headers(ctx))


@app.post(
    EMBEDDINGS_PATH,
    response_model=InternalEmbeddings,
    responses=_errors(_CALL_ERRORS),
    openapi_extra=_body(InternalEmbeddingsRequest),
    summary="Embeddings for the Memory Orchestrator",
    description=_EMBEDDING_BOUNDS,
)
async def internal_embeddings(request: Request) -> JSONResponse:
    payload, unreadable = await _read(request)
    ctx, problems, _named = _context(request, payload, call_kind="embeddings")
    with _recorded(ctx):
        if unreadable:
            raise unreadable
        call = _parse(InternalEmbeddingsRequest, payload, problems)
        out = _embed(ctx, call.input, call.input_type)
    vectors = out["vectors"]
    body = InternalEmbeddings(
        embeddings=vectors,
        model=ctx.model,
        model_resolved=ctx.model_resolved,
        provider=ctx.provider,
        dimensions=len(vectors[0]) if vectors else 0,
        usage=EmbeddingUsage(prompt_tokens=ctx.prompt_tokens, total_tokens=ctx.prompt_tokens),
        cost_usd=round(ctx.cost_usd, 10),
        request_id=ctx.request_id,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=_timing_headers(ctx))


@app.get(
    MODELS_PATH,
    response_model=ModelCatalogue,
    response_model_exclude_unset=True,
    responses=_errors({401: ["unauthorized"], 503: ["auth_unconfigured"]}),
    summary="The model catalogue",
)
async def internal_models() -> ModelCatalogue:
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
        out.append(ModelInfo(**entry))
    return ModelCatalogue(models=out, default_embedding_model=config.default_embedding_model)


app.include_router(usage_router)

handler = lambda_handler(app)

# End of the init phase: what is loaded now lives as long as the container; keep the collector from
# rescanning it on every request (tail latency).
gc.freeze()
