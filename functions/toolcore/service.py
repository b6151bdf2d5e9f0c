"""Toolcore's domain: which tools an agent may see and call, and one call from request to audit event.

The HTTP routes and the MCP endpoint both go through :class:`ToolService`; the permission check runs on
every call, whatever the caller listed before (a hidden tool is not a security boundary).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daarion_common.observability import MetricUnit, logger, metrics
from daarion_contracts.tools import TOOL_ERROR_CODES, ToolCallError, ToolCallRequest, ToolCallResponse
from toolcore.executors import HttpExecutor, Outcome, PythonExecutor
from toolcore.idempotency import IdempotencyStore
from toolcore.registry import Registry, Tool, load_registry
from toolcore.secrets import SecretSource, SecretUnavailable
from toolcore.ssrf import Allowlist, Resolver, system_resolver

if TYPE_CHECKING:
    from daarion_common.events import ToolCallEvent

ERROR_CODES = tuple(TOOL_ERROR_CODES)


@dataclass(frozen=True)
class Invocation:
    """What a call carries besides its wire request (:class:`ToolCallRequest`)."""

    request_id: str | None = None  # API Gateway's, passed to the tool's target and the audit
    lambda_context: Any = None  # lets an in-progress idempotency record expire with the invocation


@dataclass
class CallTimings:
    """Where a call's time went, for the Server-Timing header and the benchmark."""

    upstream_ms: float = 0.0  # the tool's target (or function) itself
    aws_ms: float = 0.0  # the audit event and the idempotency store
    aws_calls: int = 0


@dataclass
class CallResult:
    response: ToolCallResponse
    timings: CallTimings = field(default_factory=CallTimings)

    @property
    def ok(self) -> bool:
        return self.response.ok


def _is_json(value: Any) -> bool:
    """True if ``value`` can be sent as strict JSON in UTF-8 (no NaN/Infinity, no lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def _json_path(path: Any, root: str) -> str:
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def describe_validation_error(validator: Any, instance: Any, root: str = "args") -> str | None:
    """The most relevant error as ``args.limit: 500 is greater than the maximum of 100``, or None."""
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    return f"{_json_path(error.absolute_path, root)}: {error.message}"


class _Failed(Exception):
    """Carries a failed outcome out of the idempotent section, so the record is removed (retry allowed)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.code)
        self.outcome = outcome


_UNSET: Any = object()


def _emit(event: ToolCallEvent) -> None:
    from daarion_common.usage import emit

    emit(event)


class ToolService:
    """One container's Toolcore, built from its parts; a test builds one with other parts.

    Every part not given is built from the environment when first needed (the cold path stays
    short): the registry from ``TOOLCORE_REGISTRY`` (or the shipped ``tools.yaml``), the allowlist from
    ``TOOL_HOST_ALLOWLIST``, the idempotency store on ``IDEMPOTENCY_TABLE``. ``audit`` receives each
    call's :class:`ToolCallEvent` (default: the usage queue, ``daarion_common.usage.emit``).
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        allowlist: Allowlist | None = None,
        resolver: Resolver = system_resolver,
        http: HttpExecutor | None = None,
        python: PythonExecutor | None = None,
        secrets: SecretSource | None = None,
        idempotency: IdempotencyStore | None = _UNSET,
        audit: Callable[[ToolCallEvent], None] = _emit,
    ) -> None:
        self._registry = registry
        self._allowlist = allowlist
        self.resolver = resolver
        self._http = http
        self.python = python or PythonExecutor()
        self.secrets = secrets or SecretSource()
        self._idempotency = idempotency
        self.audit = audit
        self._lock = threading.Lock()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            with self._lock:
                if self._registry is None:
                    self._registry = load_registry(os.environ.get("TOOLCORE_REGISTRY") or None)
        return self._registry

    @property
    def allowlist(self) -> Allowlist:
        if self._allowlist is None:
            from daarion_common.settings import get_settings

            self._allowlist = Allowlist.parse(get_settings().tool_host_allowlist)
        return self._allowlist

    @property
    def http(self) -> HttpExecutor:
        if self._http is None:
            with self._lock:
                if self._http is None:
                    self._http = HttpExecutor(allowlist=self.allowlist, resolver=self.resolver)
        return self._http

    @property
    def idempotency(self) -> IdempotencyStore | None:
        """None when no store is configured: then keyed calls to non-idempotent tools are refused."""
        if self._idempotency is _UNSET:
            from daarion_common.settings import get_settings

            table = get_settings().idempotency_table
            with self._lock:
                if self._idempotency is _UNSET:
                    self._idempotency = IdempotencyStore(table) if table else None
        return self._idempotency

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self.python.close()

    # ------------------------------------------------------------ listing
    def visible_tools(self, agent_id: str, microdao_id: str) -> list[Tool]:
        return self.registry.visible_to(agent_id, microdao_id)

    # ------------------------------------------------------------ calling
    def call(self, request: ToolCallRequest, invocation: Invocation | None = None) -> CallResult:
        """One call, audited whatever happens. Never raises."""
        invocation = invocation or Invocation()
        started = time.perf_counter()
        timings = CallTimings()
        tool: Tool | None = None
        replayed = False
        try:
            tool = self.registry.get(request.tool_id)
            outcome, replayed = self._call(tool, request, invocation, timings)
        except Exception:  # a bug or an unexpected failure: the caller gets `internal`, the log gets the rest
            logger.exception("tool call failed unexpectedly", extra={"tool_id": request.tool_id})
            outcome = Outcome.fail("internal", "An internal error occurred; it has been logged.")
        timings.upstream_ms = outcome.upstream_ms
        latency_ms = (time.perf_counter() - started) * 1000  # what the caller waits for, before the audit
        tool_id = tool.id if tool is not None else request.tool_id
        response = ToolCallResponse(
            ok=outcome.ok,
            result=outcome.result if outcome.ok else None,
            error=None if outcome.ok else ToolCallError(code=outcome.code or "internal", message=outcome.message or ""),
            tool_id=tool_id,
            latency_ms=round(latency_ms, 3),
            truncated=outcome.truncated,
            idempotent_replay=replayed,
        )
        self._audit(request, tool_id, outcome, latency_ms, timings, replayed=replayed)
        metrics.add_metric(name="ToolCalls" if outcome.ok else "ToolCallErrors", unit=MetricUnit.Count, value=1)
        logger.info(
            "tool call",
            extra={"tool_id": tool_id, "agent_id": request.agent_id, "microdao_id": request.microdao_id,
                   "ok": outcome.ok, "error_code": outcome.code, "latency_ms": round(latency_ms, 3),
                   "upstream_ms": round(outcome.upstream_ms, 3), "attempts": 0 if replayed else outcome.attempts,
                   "replay": replayed, "truncated": outcome.truncated},
        )  # fmt: skip
        return CallResult(response, timings)

    def _call(
        self, tool: Tool | None, request: ToolCallRequest, invocation: Invocation, timings: CallTimings
    ) -> tuple[Outcome, bool]:
        if tool is None:
            return Outcome.fail("tool_not_found", f"No tool '{request.tool_id}'."), False
        if not tool.allows(request.agent_id, request.microdao_id):
            return Outcome.fail(
                "permission_denied", f"Agent '{request.agent_id}' may not call '{tool.id}' in this microDAO."
            ), False
        if not tool.enabled:
            reason = tool.disabled_reason or "disabled in the registry"
            return Outcome.fail("tool_disabled", f"Tool '{tool.id}' is disabled ({reason})."), False
        if not isinstance(request.args, dict):
            return Outcome.fail("invalid_args", "args: must be an object"), False
        problem = describe_validation_error(tool.input_validator, request.args)
        if problem:
            return Outcome.fail("invalid_args", problem), False
        tenant_arg = tool.config.tenant_arg
        if tenant_arg and request.args.get(tenant_arg) != request.microdao_id:
            return Outcome.fail(
                "permission_denied", f"args.{tenant_arg} must be the caller's own microDAO ('{request.microdao_id}')."
            ), False
        channel_arg = tool.config.channel_arg
        if channel_arg:
            channel = request.context.channel_id if request.context else None
            if not channel:
                return Outcome.fail(
                    "permission_denied", f"'{tool.id}' acts in the call's channel: context.channel_id is required."
                ), False
            if request.args.get(channel_arg) != channel:
                return Outcome.fail(
                    "permission_denied", f"args.{channel_arg} must be the call's own channel (context.channel_id)."
                ), False
        # What the target learns about the caller: the verified identity overrides whatever context says.
        context = {
            **(request.context.model_dump(exclude_unset=True) if request.context else {}),
            "agent_id": request.agent_id,
            "microdao_id": request.microdao_id,
            "tool_id": tool.id,
            "request_id": invocation.request_id,
        }
        if request.idempotency_key and not tool.config.hints.idempotent:
            outcome, replayed = self._idempotent(tool, request, invocation, context, timings)
        else:
            outcome, replayed = self._execute(tool, request.args, context), False
        if outcome.ok and not _is_json(outcome.result):  # the reply must stay valid JSON, whatever the tool sent
            outcome = Outcome.fail(
                "invalid_result",
                "The tool's result is not valid JSON (NaN, Infinity or a lone UTF-16 surrogate).",
                attempts=outcome.attempts, upstream_ms=outcome.upstream_ms,
            )  # fmt: skip
        if outcome.ok and not outcome.truncated and tool.output_validator is not None:
            problem = describe_validation_error(tool.output_validator, outcome.result, root="result")
            if problem:
                outcome = Outcome.fail(
                    "invalid_result",
                    "The tool's result does not match its output_schema: " + problem,
                    attempts=outcome.attempts, upstream_ms=outcome.upstream_ms,
                )  # fmt: skip
        return outcome, replayed

    def _execute(self, tool: Tool, args: dict[str, Any], context: dict[str, Any]) -> Outcome:
        if tool.config.executor == "python":
            return self.python.run(tool, args, context)
        headers: dict[str, str] = {}
        raw: list[str] = []
        for name, spec in tool.secrets:
            try:
                raw.append(self.secrets.value(name))
                headers[spec.header] = spec.prefix + raw[-1]
            except SecretUnavailable as exc:
                logger.error("tool secret unavailable", extra={"tool_id": tool.id, "secret": name, "reason": str(exc)})
                return Outcome.fail("internal", "The tool's credentials are not available; it was not called.")
        return self.http.run(tool, args, context, secret_headers=headers, redact=raw)

    def _idempotent(
        self,
        tool: Tool,
        request: ToolCallRequest,
        invocation: Invocation,
        context: dict[str, Any],
        timings: CallTimings,
    ) -> tuple[Outcome, bool]:
        """Run at most once per (tool, agent, microDAO, idempotency_key); a repeat returns the first result.

        Only successful outcomes are kept: a failed call may be retried with the same key.
        """
        store = self.idempotency
        if store is None:
            return Outcome.fail("internal", "No idempotency store is configured; the tool was not called."), False
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        executed: list[float] = []
        call = {
            "tool_id": tool.id,
            "agent_id": request.agent_id,
            "microdao_id": request.microdao_id,
            "idempotency_key": request.idempotency_key,
            "args": request.args,
        }

        def execute() -> dict[str, Any]:
            outcome = self._execute(tool, request.args, context)
            executed.append(outcome.upstream_ms)
            if not outcome.ok:
                raise _Failed(outcome)
            return outcome.to_dict()

        started = time.perf_counter()
        try:
            stored = store.run(call, execute, lambda_context=invocation.lambda_context)
        except _Failed as failed:
            return failed.outcome, False
        except IdempotencyValidationError:
            return Outcome.fail("invalid_args", "idempotency_key was already used with different args."), False
        except IdempotencyAlreadyInProgressError:
            message = "A call with this idempotency_key is still in progress; retry later."
            return Outcome.fail("internal", message), False
        except IdempotencyPersistenceLayerError:
            logger.exception("idempotency store failed", extra={"tool_id": tool.id})
            return Outcome.fail("internal", "The idempotency store is unavailable; the tool was not called."), False
        finally:
            total = (time.perf_counter() - started) * 1000
            timings.aws_ms += max(0.0, total - sum(executed))
            timings.aws_calls += 1 if not executed else 2  # read/put, then the update with the result
        outcome = Outcome(**stored)
        replayed = not executed
        if replayed:
            outcome.upstream_ms = 0.0
        return outcome, replayed

    def _audit(
        self,
        request: ToolCallRequest,
        tool_id: str,
        outcome: Outcome,
        latency_ms: float,
        timings: CallTimings,
        *,
        replayed: bool,
    ) -> None:
        """One event per call, whatever its outcome. A replay (an idempotency key answered from the
        store) says so, so the ledger counts the logical call once; ``attempts`` are the target calls
        this request made (0 for a replay or a call refused before execution)."""
        from daarion_common.events import ToolCallEvent

        channel = request.context.channel_id if request.context else None
        audit_fields = {"replay": replayed, "attempts": 0 if replayed else outcome.attempts,
                        "truncated": outcome.truncated}  # fmt: skip
        event = ToolCallEvent(
            agent_id=request.agent_id[:200] or "unknown",
            microdao_id=request.microdao_id[:200] or "unknown",
            channel_id=channel[:200] if isinstance(channel, str) and channel else None,
            latency_ms=max(0.0, latency_ms),
            status="ok" if outcome.ok else "error",
            error_code=outcome.code,
            tool_id=tool_id or "unknown",
            # the ledger's event gains these fields with the money issue (#11); until then they are logged
            **{k: v for k, v in audit_fields.items() if k in ToolCallEvent.model_fields},
        )
        started = time.perf_counter()
        self.audit(event)
        timings.aws_ms += (time.perf_counter() - started) * 1000
        timings.aws_calls += 1
