"""Summaries through the LLM Proxy (``{LLM_PROXY_URL}/internal/llm/proxy`` with the internal secret):
used by the memory function's summarize route and by the indexer's consolidation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daarion_common.errors import ApiError
from daarion_contracts.llm import TIMEOUT_HEADER
from daarion_contracts.memory import MAX_TRANSCRIPT_CHARS

if TYPE_CHECKING:
    from daarion_common.memory.config import MemorySettings

SUMMARY_PROMPT = (
    "You keep an AI agent's long-term memory. Summarise the conversation below into a short, factual note: "
    "who asked for what, decisions, facts worth remembering, open tasks with owners and dates. Write in the "
    "language the conversation mostly uses. No preamble."
)


def transcript_of(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The first of ``rows`` (most wanted first: the newest, or the soonest to expire) that fit
    MAX_TRANSCRIPT_CHARS, as a transcript in the order they were said, with the rows used."""
    used: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        length = len(row["text"]) + 24
        if used and size + length > MAX_TRANSCRIPT_CHARS:
            break
        used.append(row)
        size += length
    used.sort(key=lambda r: r["created_at"])
    lines = [f"[{r['created_at'].isoformat(timespec='minutes')}] {r['text']}"[:MAX_TRANSCRIPT_CHARS] for r in used]
    return "\n\n".join(lines), used


# The LLM Proxy names its placeholder provider so; its text is never stored as a memory.
OFFLINE_PROVIDER = "offline"


@dataclass(frozen=True)
class ProxyReply:
    content: str
    provider: str | None

    @property
    def offline(self) -> bool:
        return self.provider == OFFLINE_PROVIDER


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422, "invalid_request", f"Invalid request: {field}: {message}", fields=[{"field": field, "message": message}]
    )


def call_llm_proxy(
    settings: MemorySettings,
    model: str,
    messages: list[dict[str, str]],
    metadata: dict[str, Any],
    *,
    model_from_caller: bool = False,
    max_tokens: int = 500,
) -> ProxyReply:
    """POST {LLM_PROXY_URL}/internal/llm/proxy; any failure is a clear 502/503/504, never a crash. The
    proxy's 429 is passed on (the agent's limit or budget, with Retry-After), and a model the proxy does not
    know is a 422 naming ``model`` when the caller chose it (a 502 when it is the configured default)."""
    import httpx

    from daarion_common import auth

    if not settings.llm_proxy_url:
        raise ApiError(503, "llm_proxy_unconfigured", "Summaries need the LLM Proxy; LLM_PROXY_URL is not set.")
    url = settings.llm_proxy_url.rstrip("/") + "/internal/llm/proxy"
    try:
        response = httpx.post(
            url,
            json={"model": model, "messages": messages, "max_tokens": max_tokens, "metadata": metadata},
            # the proxy ends the call within what we wait (its own 504), so no provider call outlives our wait
            headers={
                "X-Internal-Secret": auth.expected_secret(),
                TIMEOUT_HEADER: str(int(settings.llm_proxy_timeout_seconds * 1000)),
            },
            timeout=settings.llm_proxy_timeout_seconds,
        )
    except httpx.TimeoutException as exc:
        raise ApiError(504, "llm_proxy_timeout", "The LLM Proxy did not answer in time.") from exc
    except httpx.HTTPError as exc:
        raise ApiError(
            503, "llm_proxy_unavailable", f"The LLM Proxy cannot be reached ({type(exc).__name__})."
        ) from exc
    if response.status_code == 429:
        retry_after = response.headers.get("retry-after")
        raise ApiError(
            429, "rate_limited", "The LLM Proxy refused the summary: a rate limit or budget is exhausted.",
            headers={"Retry-After": retry_after} if retry_after else None,
        )  # fmt: skip
    if response.status_code == 504:
        raise ApiError(504, "llm_proxy_timeout", "The LLM Proxy's providers did not answer in time; no summary stored.")
    if response.status_code == 404 and _error_code(response) == "model_not_found":
        if model_from_caller:
            raise _invalid("model", f"the LLM Proxy knows no model {model!r}")
        raise ApiError(502, "llm_proxy_error", f"The LLM Proxy knows no model {model!r} (MEMORY_SUMMARY_MODEL).")
    if response.status_code != 200:
        raise ApiError(
            502, "llm_proxy_error", f"The LLM Proxy answered HTTP {response.status_code}; no summary was stored."
        )
    try:
        answer = response.json()
        content, provider = answer["content"], answer.get("provider")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ApiError(502, "llm_proxy_error", "The LLM Proxy's answer has no content; no summary was stored.") from exc
    if not isinstance(content, str) or not content.strip():
        raise ApiError(502, "llm_proxy_error", "The LLM Proxy returned an empty summary; nothing was stored.")
    return ProxyReply(content.strip(), provider if isinstance(provider, str) else None)


def _error_code(response: Any) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
