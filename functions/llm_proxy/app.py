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
import os
import re
import uuid
from dataclasses import replace
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from daarion_common.errors import ApiError, request_id_of
from daarion_common.http_app import create_app, lambda_handler
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
from llm_proxy import accounting, callers, providers, sse
from llm_proxy.callers import Detected
from llm_proxy.calls import Billed, Call, CallFailed, CallKind, CallPath, Spend
from llm_proxy.service import LlmService
from llm_proxy.usage_api import router as usage_router

M = TypeVar("M", bound=BaseModel)
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|.*\[.*\].*)$")

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

# The container's service, built once from its parts at cold start (a broken routing config fails here).
# A test gives the app another service (`app.state.service = LlmService(config, breaker=..., ...)`).
app.state.service = LlmService()
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") in providers.PRELOADED_INIT_TYPES:
    providers.preload()  # nobody waits on a pre-initialised environment: load the SDK now, not in a call


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
    400: ["invalid_json", "upstream_rejected_request", "context_length_exceeded", "long_path_required"],
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
                errors_.append({**error, "loc": ("body", *loc), "msg": callers.clean(str(error.get("msg", "")))})
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


def _service(request: Request) -> LlmService:
    return request.app.state.service  # type: ignore[no-any-return]


def _begin(request: Request, payload: Any, kind: CallKind, *, free_metadata: bool) -> tuple[LlmService, Call, Detected]:
    """The service, the call as it starts (caller, model, deadline) and what was detected of the caller."""
    svc = _service(request)
    detected = callers.detect(request, payload, default_model=svc.default_model(kind), free_metadata=free_metadata)
    call = svc.begin(
        request_id_of(request) or str(uuid.uuid4()),
        detected.caller,
        detected.model,
        kind,
        request.scope.get("aws.context"),
        path_of(request.scope),
        caller_waits_s=detected.timeout_s,
    )
    return svc, call, detected


def path_of(scope: dict[str, Any]) -> CallPath:
    """How the request arrived: through a Lambda Function URL (the long path: its event's domain is
    ``<id>.lambda-url.<region>.on.aws``) or otherwise (API Gateway: the API path). ``LLM_PROXY_PATH``
    (``api`` | ``long``) overrides it."""
    forced = os.environ.get("LLM_PROXY_PATH")
    if forced:
        return CallPath(forced)
    event = scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    domain = context.get("domainName") if isinstance(context, dict) else None
    return CallPath.LONG if isinstance(domain, str) and ".lambda-url." in domain else CallPath.API


def _timing_headers(call: Call, billed: Billed, spend: Spend) -> dict[str, str]:
    admission = spend.admission
    aws_calls = call.timings.aws_calls + (admission.aws_calls if admission else 0)
    aws_ms = call.timings.aws_ms + (admission.aws_ms if admission else 0.0)
    return {
        "Server-Timing": f"total;dur={call.latency_ms():.3f}, upstream;dur={call.timings.upstream_ms:.3f}, "
        f'aws;dur={aws_ms:.3f};desc="{aws_calls} calls"',
        "X-LLM-Provider": billed.provider or "",
        "X-LLM-Model-Resolved": billed.model_resolved or "",
        "X-LLM-Fallback": "true" if billed.fallback_used else "false",
        "X-Request-Id": call.request_id,
    }


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


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
    svc, call, detected = _begin(request, payload, "chat", free_metadata=False)
    with accounting.failures_recorded(svc.usage, call):
        if unreadable:
            raise unreadable
        parsed = _parse(ProxyRequest, payload, detected.problems)
        body: dict[str, Any] = {"messages": _messages(parsed.messages)}
        for key in ("max_tokens", "temperature", "top_p", "tools", "tool_choice", "response_format"):
            value = getattr(parsed, key)
            if value is not None:
                body[key] = value
        result = svc.chat(call, body)
    accounting.record_served(svc.usage, call, result)
    choice = (result.value.get("choices") or [{}])[0] or {}
    message = choice.get("message") or {}
    billed = result.billed
    reply = ProxyResponse(
        content=message.get("content") or "",
        usage=TokenUsage(
            prompt_tokens=billed.prompt_tokens,
            completion_tokens=billed.completion_tokens,
            total_tokens=billed.total_tokens,
        ),
        provider=billed.provider,
        model=call.model,
        model_resolved=billed.model_resolved,
        latency_ms=round(call.latency_ms(), 3),
        cost_usd=round(billed.cost_usd, 10),
        finish_reason=choice.get("finish_reason"),
        fallback_used=billed.fallback_used,
        request_id=call.request_id,
    )
    if message.get("tool_calls"):
        reply.tool_calls = message["tool_calls"]
    # a body built from its contract model (fields left unset are left out), with the timing headers
    return JSONResponse(
        reply.model_dump(mode="json", exclude_unset=True), headers=_timing_headers(call, result.billed, result.spend)
    )


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
    svc, call, detected = _begin(request, payload, "chat", free_metadata=True)
    with accounting.failures_recorded(svc.usage, call):
        if unreadable:
            raise unreadable
        parsed = _parse(ChatCompletionRequest, payload, detected.problems)
        detected.require_caller()
    body = parsed.model_dump(exclude_none=True, exclude={"model", "metadata", "stream", "stream_options"})
    body["messages"] = _messages(parsed.messages)
    if parsed.stream:
        call = replace(call, streamed=True)
        with accounting.failures_recorded(svc.usage, call):
            opened = svc.chat_stream(call, body)
        include_usage = bool((parsed.stream_options or {}).get("include_usage"))
        so_far = Billed(opened.candidate.access.name, opened.model_resolved, fallback_used=opened.fallback_used)
        headers = {**_timing_headers(call, so_far, opened.spend), "Cache-Control": "no-cache"}
        return StreamingResponse(sse.relay(svc, opened, include_usage), media_type="text/event-stream", headers=headers)
    with accounting.failures_recorded(svc.usage, call):
        result = svc.chat(call, body)
        try:
            ChatCompletion.model_validate(result.value)
        except ValidationError:
            provider = result.billed.provider
            error = ApiError(
                502,
                "upstream_error",
                f"{provider}'s answer is not an OpenAI chat.completion.",
                extra={"providers": [{"provider": provider, "model": call.model, "error": "malformed answer"}]},
            )
            raise CallFailed(error, result.spend, result.billed) from None
    accounting.record_served(svc.usage, call, result)
    return JSONResponse(result.value, headers=_timing_headers(call, result.billed, result.spend))


@app.get(
    V1_MODELS_PATH,
    response_model=ModelList,
    response_model_exclude_none=True,  # context_window: stated for chat models only
    responses=_errors({401: ["unauthorized"], 503: ["auth_unconfigured"]}),
    summary="The logical models (OpenAI's list shape)",
)
async def v1_models(request: Request) -> ModelList:
    config = _service(request).config
    return ModelList(
        data=[
            ModelCard(id=name, owned_by=model.provider, context_window=model.context_window)
            for name, model in sorted(config.models.items())
        ]
    )


_EMBEDDING_BOUNDS = (
    f"At most {MAX_EMBEDDING_INPUTS} inputs and {MAX_EMBEDDING_CHARS:,} characters in all (422 naming `input`); "
    f"the in-process model (`multilingual-e5-small`) at most {MAX_LOCAL_EMBEDDING_CHARS:,} characters and "
    f"{MAX_LOCAL_EMBEDDING_TOKENS:,} tokens in all (413 `payload_too_large` naming `input`)."
)


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
    svc, call, detected = _begin(request, payload, "embeddings", free_metadata=True)
    with accounting.failures_recorded(svc.usage, call):
        if unreadable:
            raise unreadable
        parsed = _parse(EmbeddingsRequest, payload, detected.problems)
        detected.require_caller()
        texts = [parsed.input] if isinstance(parsed.input, str) else parsed.input
        result = svc.embeddings(call, texts, parsed.input_type)
    accounting.record_served(svc.usage, call, result)
    data = []
    for index, vector in enumerate(result.value):
        if parsed.encoding_format == "base64":
            import numpy as np

            encoded: Any = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        else:
            encoded = vector
        data.append(Embedding(index=index, embedding=encoded))
    tokens = result.billed.prompt_tokens
    body = EmbeddingList(data=data, model=call.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))
    return JSONResponse(body.model_dump(mode="json"), headers=_timing_headers(call, result.billed, result.spend))


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
    svc, call, detected = _begin(request, payload, "embeddings", free_metadata=False)
    with accounting.failures_recorded(svc.usage, call):
        if unreadable:
            raise unreadable
        parsed = _parse(InternalEmbeddingsRequest, payload, detected.problems)
        result = svc.embeddings(call, parsed.input, parsed.input_type)
    accounting.record_served(svc.usage, call, result)
    vectors, billed = result.value, result.billed
    body = InternalEmbeddings(
        embeddings=vectors,
        model=call.model,
        model_resolved=billed.model_resolved,
        provider=billed.provider,
        dimensions=len(vectors[0]) if vectors else 0,
        usage=EmbeddingUsage(prompt_tokens=billed.prompt_tokens, total_tokens=billed.prompt_tokens),
        cost_usd=round(billed.cost_usd, 10),
        request_id=call.request_id,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=_timing_headers(call, result.billed, result.spend))


@app.get(
    MODELS_PATH,
    response_model=ModelCatalogue,
    response_model_exclude_unset=True,
    responses=_errors({401: ["unauthorized"], 503: ["auth_unconfigured"]}),
    summary="The model catalogue",
)
async def internal_models(request: Request) -> ModelCatalogue:
    """Logical models: provider, physical name, prices, fallbacks, and whether the provider is configured."""
    svc = _service(request)
    config = svc.config
    local = get_settings().is_local
    out = []
    for name, model in sorted(config.models.items()):
        acc = svc.providers.access(model.provider)
        entry: dict[str, Any] = {
            "model": name,
            "kind": model.kind,
            "provider": model.provider,
            "physical": model.physical,
            "price_in_usd_per_1m": model.price_in,
            "price_out_usd_per_1m": model.price_out,
            "max_tokens": model.max_tokens,
            "timeout_s": model.timeout_s,
            "long_path_only": model.long_path_only,
            "fallbacks": model.fallbacks,
            "configured": acc.configured,
            "circuit": svc.breaker.state(model.provider),
        }
        if model.dimensions:
            entry["dimensions"] = model.dimensions
        if model.context_window is not None:
            entry["context_window"] = model.context_window
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
