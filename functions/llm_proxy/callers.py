"""Who is calling: ``metadata.agent_id`` / ``microdao_id`` / ``channel_id``, or the ``X-Agent-Id`` /
``X-Microdao-Id`` / ``X-Channel-Id`` headers, and what is wrong with those ids.

Best effort, so that even a malformed call is counted: an absent or invalid id is recorded as ``unknown``
(never copied into the usage event). The headers are always validated; the ``metadata`` ids too when the
route's model leaves ``metadata`` free-form (the OpenAI-compatible routes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from daarion_common.errors import ApiError
from daarion_contracts.llm import AGENT_HEADER, CHANNEL_HEADER, MICRODAO_HEADER, TIMEOUT_HEADER
from daarion_contracts.types import Identifier
from llm_proxy.calls import Caller

MAX_TIMEOUT_MS = 900_000  # Lambda's longest invocation
UNKNOWN = "unknown"  # the usage event's caller when it cannot be told (absent or invalid)
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass(frozen=True)
class Detected:
    caller: Caller
    model: str  # the logical model asked for (``unknown`` when absent or invalid)
    problems: list[dict[str, Any]] = field(default_factory=list)  # pydantic-style errors for the 422
    named: frozenset[str] = frozenset()  # the ids given at all, valid or not
    timeout_s: float | None = None  # how long the caller waits (X-Request-Timeout-Ms), if it says

    def require_caller(self) -> None:
        """The OpenAI-compatible routes: the caller must be named (metadata or headers)."""
        missing = [f for f in ("agent_id", "microdao_id") if f not in self.named]
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


def clean(message: str) -> str:
    return message.removeprefix("Value error, ")


def identifier(value: Any) -> tuple[str | None, str | None]:
    """(the value if it is a valid identifier, else why not)."""
    if not isinstance(value, str):
        return None, "must be a string (headers: valid UTF-8)"
    try:
        return _IDENTIFIER.validate_python(value), None
    except ValidationError as exc:
        return None, clean(exc.errors(include_url=False)[0]["msg"])


def _utf8(header: str) -> Any:
    """A header's bytes as UTF-8 (ASGI hands them over as latin-1); None (invalid) if they are not UTF-8."""
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def detect(
    request: Request, payload: Any, *, default_model: str | None = None, free_metadata: bool = False
) -> Detected:
    """The caller and model of a request, however malformed (``default_model`` when the body names none)."""
    body = payload if isinstance(payload, dict) else {}
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    problems: list[dict[str, Any]] = []
    named: set[str] = set()

    def pick(key: str, header: str) -> str | None:
        raw_header = request.headers.get(header)
        from_header = None
        if raw_header or meta.get(key) is not None:
            named.add(key)
        if raw_header:  # an empty header is no header
            from_header, why = identifier(_utf8(raw_header))
            if why:
                problems.append({"loc": ("header", header), "msg": why, "type": "invalid_identifier"})
        if meta.get(key) is not None:
            value, why = identifier(meta[key])
            if why and free_metadata:
                problems.append({"loc": ("body", "metadata", key), "msg": why, "type": "invalid_identifier"})
            return value
        return from_header

    model, _ = identifier(body.get("model"))
    if model is None and body.get("model") is None:
        model = default_model
    caller = Caller(
        agent_id=pick("agent_id", AGENT_HEADER) or UNKNOWN,
        microdao_id=pick("microdao_id", MICRODAO_HEADER) or UNKNOWN,
        channel_id=pick("channel_id", CHANNEL_HEADER),
    )
    timeout_s = None
    raw_timeout = request.headers.get(TIMEOUT_HEADER)
    if raw_timeout:
        if raw_timeout.isascii() and raw_timeout.isdigit() and 0 < int(raw_timeout) <= MAX_TIMEOUT_MS:
            timeout_s = int(raw_timeout) / 1000
        else:
            why = f"milliseconds, an integer from 1 to {MAX_TIMEOUT_MS}"
            problems.append({"loc": ("header", TIMEOUT_HEADER), "msg": why, "type": "invalid_timeout"})
    return Detected(caller, model or UNKNOWN, problems, frozenset(named), timeout_s)
