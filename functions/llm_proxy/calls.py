"""One call's story, as values passed along: who asked for what by when (:class:`Call`), what it holds on
the limits (:class:`Spend`), who answered and what it cost (:class:`Billed`), and how it ended
(:class:`Served`, or :class:`CallFailed`). The service produces them; accounting turns them into the one
usage event of the call; the HTTP layer into the response.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from daarion_common.errors import ApiError
from llm_proxy.limiter import Admission

T = TypeVar("T")
CallKind = Literal["chat", "embeddings"]


class CallPath(enum.Enum):
    """The way a call arrived, which sets its deadline (routing.yaml ``deadlines``)."""

    API = "api"  # API Gateway HTTP API -> LlmProxyFunction (buffered by Mangum; cut by the gateway at 30 s)
    LONG = "long"  # the Function URL with response streaming (LlmProxyStreamFunction)


@dataclass(frozen=True)
class Caller:
    """Who is calling: validated identifiers, or ``unknown`` (never an invalid value copied into the ledger)."""

    agent_id: str
    microdao_id: str
    channel_id: str | None = None


@dataclass
class Timings:
    """Where a call's time went, for the Server-Timing header and the benchmark (added to as it goes)."""

    upstream_ms: float = 0.0  # the provider calls themselves
    aws_ms: float = 0.0  # the usage event's SendMessage (the limiter's calls are on the Admission)
    aws_calls: int = 0


@dataclass(frozen=True)
class Call:
    """What the HTTP layer hands the service: who asks for which logical model, and by when it must end
    (``started`` and ``deadline`` on the service's clock)."""

    request_id: str
    caller: Caller
    model: str
    kind: CallKind
    started: float
    deadline: float
    path: CallPath = CallPath.API
    streamed: bool = False
    timings: Timings = field(default_factory=Timings)
    clock: Callable[[], float] = time.perf_counter

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def latency_ms(self) -> float:
        return (self.clock() - self.started) * 1000


@dataclass(frozen=True)
class Spend:
    """What a call holds on the limits (reserved before any provider is called, extended for a dearer
    fallback) and whether a provider may have billed what we cannot know (a timeout, a cut stream): then the
    usage recorder keeps the reservation instead of correcting it to the reported figures."""

    admission: Admission | None = None
    billing_unknown: bool = False


@dataclass(frozen=True)
class Billed:
    """Who answered, and the tokens and dollars of the answer (the provider's figures, else upper bounds)."""

    provider: str | None
    model_resolved: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    fallback_used: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Served(Generic[T]):
    """A call that succeeded: its value (an OpenAI-shaped completion, vectors ...), its bill, its spend."""

    value: T
    billed: Billed
    spend: Spend


class CallFailed(Exception):
    """A call that ended in ``error`` after it started spending: what it held (so the reservation is
    released or kept) and, when a provider had answered, its bill."""

    def __init__(self, error: ApiError, spend: Spend, billed: Billed | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.spend = spend
        self.billed = billed
