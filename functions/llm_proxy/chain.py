"""A logical model's chain of candidates (the model, then its fallbacks) and how one call walks it: tries of
each provider with backoff honouring Retry-After, open circuits skipped, the call's deadline kept, and a
typed reason for every candidate that gave no answer (:class:`Reason`), summarised into the caller's error.
"""

from __future__ import annotations

import email.utils
import enum
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from daarion_common.errors import ApiError
from llm_proxy.calls import Call
from llm_proxy.config import ModelConfig, RetryConfig
from llm_proxy.providers import NO_KEY, CircuitBreaker, ProviderAccess

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
# Upstream answers that mean the caller's request is wrong: no fallback can fix those.
CALLER_ERROR_STATUS = frozenset({400, 413, 422})


class Reason(enum.Enum):
    """Why a candidate of the chain gave no answer."""

    NOT_CONFIGURED = "not configured"  # skipped: its provider has no key or base URL
    CIRCUIT_OPEN = "circuit open"  # skipped: its provider's circuit is open
    CONTEXT_WINDOW = "context window too small"  # skipped: the request cannot fit the model's window
    LONG_PATH_ONLY = "served on the long path only"  # skipped: it may need longer than this path allows
    DEADLINE = "call deadline reached"  # not called: the call's deadline had passed
    TIMED_OUT = "timed out"  # called: no answer within the time left
    FAILED = "failed"  # called: connection error or an error status

    @property
    def skipped(self) -> bool:
        """The provider was never called (nothing can have been billed)."""
        return self in (Reason.NOT_CONFIGURED, Reason.CIRCUIT_OPEN, Reason.CONTEXT_WINDOW, Reason.LONG_PATH_ONLY)

    @property
    def timeout(self) -> bool:
        return self in (Reason.DEADLINE, Reason.TIMED_OUT)


@dataclass(frozen=True)
class Attempt:
    """One candidate that gave no answer, and why; ``detail`` is what is missing (not configured) or what
    the provider answered (failed)."""

    provider: str
    logical: str
    reason: Reason
    detail: str = ""

    @property
    def error(self) -> str:
        """As callers read it in ``providers[].error``."""
        if self.reason is Reason.NOT_CONFIGURED:
            return f"not configured (no {self.detail})"
        if self.reason in (Reason.FAILED, Reason.CONTEXT_WINDOW):
            return self.detail
        return self.reason.value

    def as_detail(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.logical, "error": self.error}


@dataclass(frozen=True)
class Candidate:
    logical: str
    model: ModelConfig
    access: ProviderAccess
    # locally, when no provider of the chain is configured: the skip the offline provider answers for
    offline_for: Attempt | None = None

    @property
    def is_offline(self) -> bool:
        return self.offline_for is not None or self.access.name == "offline"

    @property
    def missing(self) -> str | None:
        """Offline stand-in: what the real provider lacks (for the placeholder's message)."""
        return self.offline_for.detail if self.offline_for is not None else None


@dataclass(frozen=True)
class Plan:
    """The candidates to try in order, and the ones skipped before any call (unconfigured providers)."""

    candidates: list[Candidate]
    skipped: list[Attempt]


@dataclass(frozen=True)
class Answer(Generic[T]):
    value: T
    candidate: Candidate
    billing_unknown: bool  # an earlier try timed out: that provider may have billed it


class ChainFailed(Exception):
    """No candidate answered (or the request was refused): the caller's error, and whether a provider may
    have billed something we cannot know."""

    def __init__(self, error: ApiError, billing_unknown: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.billing_unknown = billing_unknown


def summary_error(attempts: list[Attempt]) -> ApiError:
    """The caller's error when every candidate failed or was skipped."""
    summary = "; ".join(f"{a.provider} ({a.logical}): {a.error}" for a in attempts)
    details = [a.as_detail() for a in attempts]
    tried = [a for a in attempts if not a.reason.skipped]
    if not tried:
        unconfigured = all(a.reason is Reason.NOT_CONFIGURED for a in attempts)
        return ApiError(
            503,
            "provider_unconfigured" if unconfigured else "provider_unavailable",
            f"No provider can serve this model: {summary}.",
            extra={"providers": details},
        )
    if all(a.reason.timeout for a in tried):
        return ApiError(504, "upstream_timeout", f"The upstream timed out: {summary}.", extra={"providers": details})
    return ApiError(502, "upstream_error", f"Every provider failed: {summary}.", extra={"providers": details})


# ---------------------------------------------------------------------------- what an upstream error means
@dataclass(frozen=True)
class UpstreamError:
    reason: Reason  # TIMED_OUT or FAILED
    detail: str
    retryable: bool
    status: int | None = None


def describe(exc: Exception, secret: str | None) -> UpstreamError:
    """What an SDK exception means for the chain. Upstream messages are cut short and scrubbed of the
    provider key (some providers echo it back); request headers are never included."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError(Reason.TIMED_OUT, "timed out", True)
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError(Reason.FAILED, "connection failed", True)
    if isinstance(exc, openai.APIStatusError):
        message = ""
        try:
            body = exc.response.json()
            error = body.get("error") if isinstance(body, dict) else None
            message = str(error.get("message") if isinstance(error, dict) else error or "")
        except Exception:  # a non-JSON error body: the status says enough
            message = ""
        message = scrub(message, secret)[:200]
        text = f"HTTP {exc.status_code}" + (f": {message}" if message else "")
        return UpstreamError(Reason.FAILED, text, exc.status_code in RETRYABLE_STATUS, exc.status_code)
    return UpstreamError(Reason.FAILED, type(exc).__name__, False)


def scrub(text: str, secret: str | None) -> str:
    """Remove the key, or any long piece of it (providers echo keys back, whole or in part), from text
    meant for callers or logs."""
    if not secret or len(secret) < 8 or secret == NO_KEY:
        return text
    text = text.replace(secret, "***")
    return _TOKEN.sub(lambda m: "***" if len(m.group()) >= 10 and m.group() in secret else m.group(), text)


_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")


def retry_after_s(exc: Any) -> float | None:
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


# ---------------------------------------------------------------------------- walking the chain
Send = Callable[[Candidate, float], T]  # (candidate, seconds left for this try) -> the provider's answer


class ChainRunner:
    """Walks a :class:`Plan` for one call. Every way out of a half-open circuit's trial call settles the
    breaker (success, failure, or released without a verdict)."""

    def __init__(
        self,
        retry: RetryConfig,
        breaker: CircuitBreaker,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.retry = retry
        self.breaker = breaker
        self.sleep = sleep
        self.clock = clock

    def run(
        self, call: Call, plan: Plan, send: Send[T], before: Callable[[Candidate], None] | None = None
    ) -> Answer[T]:
        """The first answer of the chain, or :class:`ChainFailed`. ``before`` runs before a candidate is
        called (the reservation is extended to its worst case there; it may refuse with an ApiError)."""
        attempts = list(plan.skipped)
        billing_unknown = False
        for cand in plan.candidates:
            name = cand.access.name
            guarded = cand.offline_for is None
            if guarded and not self.breaker.allow(name):
                attempts.append(Attempt(name, cand.logical, Reason.CIRCUIT_OPEN))
                continue
            try:
                if before is not None:
                    before(cand)
                for attempt in range(self.retry.attempts_per_provider):
                    if self.clock() >= call.deadline:
                        attempts.append(Attempt(name, cand.logical, Reason.DEADLINE))
                        break
                    begin = self.clock()
                    try:
                        value = send(cand, max(0.05, min(cand.model.timeout_s, call.deadline - begin)))
                    except ApiError:
                        raise
                    except Exception as exc:
                        call.timings.upstream_ms += (self.clock() - begin) * 1000
                        failed = describe(exc, cand.access.api_key)
                        if failed.status in CALLER_ERROR_STATUS:
                            if guarded:
                                self.breaker.success(name)  # it answered: the provider is up, the request is wrong
                            error = ApiError(
                                413 if failed.status == 413 else 400,
                                "upstream_rejected_request",
                                f"{name} rejected the request: {failed.detail}",
                            )
                            raise ChainFailed(error, billing_unknown) from None
                        if failed.reason is Reason.TIMED_OUT:
                            billing_unknown = True  # it may have generated (and billed) before we gave up
                        if guarded:
                            self.breaker.failure(name)
                        if (
                            failed.retryable
                            and attempt + 1 < self.retry.attempts_per_provider
                            and self._wait_before_retry(exc, attempt, call)
                        ):
                            continue
                        attempts.append(Attempt(name, cand.logical, failed.reason, failed.detail))
                        break
                    call.timings.upstream_ms += (self.clock() - begin) * 1000
                    if guarded:
                        self.breaker.success(name)
                    return Answer(value, cand, billing_unknown)
            except ApiError as error:  # refused before or while calling (a limit, a local bound)
                raise ChainFailed(error, billing_unknown) from None
            finally:
                if guarded:
                    self.breaker.release(name)  # a trial that ended without a verdict (deadline, 429, local error)
        raise ChainFailed(summary_error(attempts), billing_unknown)

    def _wait_before_retry(self, exc: Exception, attempt: int, call: Call) -> bool:
        """Sleep before the next try of the same provider; False if it is not worth waiting (move on)."""
        wait = retry_after_s(exc)
        if wait is not None and wait > self.retry.retry_after_max_s:
            return False
        if wait is None:
            wait = random.uniform(0, min(self.retry.backoff_max_s, self.retry.backoff_base_s * (2**attempt)))  # noqa: S311
        if self.clock() + wait >= call.deadline:
            return False
        self.sleep(wait)
        return True
