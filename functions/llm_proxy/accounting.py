"""Exactly one usage event per call, success or failure, sent before the response returns: built from the
call's values (:mod:`llm_proxy.calls`), with the call metrics beside it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi.exceptions import RequestValidationError

from daarion_common.errors import ApiError
from daarion_common.events import HeldCounter, LlmCallEvent, Reservation
from daarion_common.observability import MetricUnit, metrics
from daarion_common.settings import get_settings
from llm_proxy.calls import Billed, Call, CallFailed, Served, Spend

UsageSink = Callable[[LlmCallEvent], object]
UPSTREAM_FAILURES = frozenset({"upstream_error", "upstream_timeout", "stream_interrupted"})


def reservation(spend: Spend) -> Reservation | None:
    held = spend.admission
    if held is None or not held.enforced:
        return None
    return Reservation(
        tokens=held.tokens,
        usd_micros=held.usd_micros,
        counters=[HeldCounter(pk=h.pk, attribute=h.attribute, amount=h.amount) for h in held.held],  # type: ignore[arg-type]
    )


def usage_event(call: Call, billed: Billed | None, spend: Spend, error_code: str | None) -> LlmCallEvent:
    billed = billed or Billed(provider=None, model_resolved=None)
    return LlmCallEvent(
        request_id=call.request_id,
        agent_id=call.caller.agent_id,
        microdao_id=call.caller.microdao_id,
        channel_id=call.caller.channel_id,
        model=call.model,
        provider=billed.provider,
        model_resolved=billed.model_resolved,
        call_kind=call.kind,
        prompt_tokens=billed.prompt_tokens,
        completion_tokens=billed.completion_tokens,
        total_tokens=billed.total_tokens,
        cost_usd=round(billed.cost_usd, 10),
        latency_ms=round(call.latency_ms(), 3),
        status="error" if error_code else "ok",
        error_code=error_code,
        fallback_used=billed.fallback_used,
        streamed=call.streamed,
        reservation=reservation(spend),
        charge="reserved" if spend.billing_unknown else "actual",
    )


def record(sink: UsageSink, call: Call, billed: Billed | None, spend: Spend, error_code: str | None = None) -> None:
    """Send the call's usage event (and its metrics)."""
    metrics.add_metric(name="LlmCalls", unit=MetricUnit.Count, value=1)
    if billed is not None and billed.fallback_used:
        metrics.add_metric(name="LlmFallbacks", unit=MetricUnit.Count, value=1)
    if error_code == "rate_limited":
        metrics.add_metric(name="LlmRateLimited", unit=MetricUnit.Count, value=1)
    elif error_code in UPSTREAM_FAILURES:
        metrics.add_metric(name="LlmUpstreamFailures", unit=MetricUnit.Count, value=1)
    started = time.perf_counter()
    sink(usage_event(call, billed, spend, error_code))
    if get_settings().usage_queue_url:  # an SQS SendMessage was attempted
        call.timings.aws_calls += 1
        call.timings.aws_ms += (time.perf_counter() - started) * 1000


def record_served(sink: UsageSink, call: Call, result: Served[object]) -> None:
    """The success path's event."""
    record(sink, call, result.billed, result.spend)


@contextmanager
def failures_recorded(sink: UsageSink, call: Call) -> Iterator[None]:
    """Any failure inside is the call's one usage event (``error`` with its code), then reaches the caller:
    a :class:`CallFailed` as its ApiError, with what the call held."""
    try:
        yield
    except CallFailed as failed:
        record(sink, call, failed.billed, failed.spend, failed.error.code)
        raise failed.error from None
    except ApiError as exc:
        record(sink, call, None, Spend(), exc.code)
        raise
    except RequestValidationError:
        record(sink, call, None, Spend(), "invalid_request")
        raise
    except Exception:
        record(sink, call, None, Spend(), "internal")
        raise
