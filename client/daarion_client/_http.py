"""One HTTP core for the sync and async clients: the secret header, timeouts, a deadline, and
retries on 429, 5xx and connection errors with exponential backoff that honours Retry-After."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from daarion_client.errors import ConnectionFailed, DeadlineExceeded, ServiceError, error_for

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_SECRET = "dev-secret-token"  # noqa: S105 - what agent-runtime sends by default; only a local stack accepts it


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # in all, the first included
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        return min(self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random() / 2), self.max_backoff_s)  # noqa: S311


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _raise_for(service: str, response: httpx.Response) -> None:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    request_id = response.headers.get("apigw-requestid") or (body.get("request_id") if isinstance(body, dict) else None)
    raise error_for(service, response.status_code, body, request_id, _retry_after(response))


class _Core:
    service = "service"
    env_var = ""
    default_url = ""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get(self.env_var) or self.default_url).rstrip("/")
        self.secret = secret or os.environ.get("INTERNAL_SECRET") or DEFAULT_SECRET
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"X-Internal-Secret": self.secret, **(extra or {})}

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(self.service)
        return min(self.timeout, remaining)

    def _outcome(
        self, attempt: int, deadline: float | None, response: httpx.Response | None, exc: Exception | None
    ) -> tuple[bool, Any, float]:
        """(done, result-or-failure, delay before the next attempt). Raises what must not be retried."""
        if response is not None:
            if response.status_code < 400:
                return True, response.json(), 0.0
            if response.status_code not in RETRY_STATUSES:
                _raise_for(self.service, response)
            try:
                _raise_for(self.service, response)
            except ServiceError as error:
                return False, error, self.retry.delay(attempt, _retry_after(response))
        if isinstance(exc, httpx.TimeoutException):
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(self.service) from exc
            return (
                False,
                ConnectionFailed(self.service, f"timed out: {type(exc).__name__}"),
                self.retry.delay(attempt, None),
            )
        return False, ConnectionFailed(self.service, f"{type(exc).__name__}: {exc}"), self.retry.delay(attempt, None)

    def _may_retry(self, attempt: int, delay: float, deadline: float | None) -> bool:
        if attempt >= self.retry.attempts:
            return False
        return deadline is None or time.monotonic() + delay < deadline


class SyncCore(_Core):
    def __init__(self, *args: Any, http: httpx.Client | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = http or httpx.Client()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> Any:
        attempt = 0
        while True:
            attempt += 1
            response, error = None, None
            try:
                response = self._http.request(
                    method, self.base_url + path, json=json, params=params,
                    headers=self._headers(headers), timeout=self._timeout(deadline),
                )  # fmt: skip
            except httpx.TransportError as exc:
                error = exc
            done, value, delay = self._outcome(attempt, deadline, response, error)
            if done:
                return value
            if not self._may_retry(attempt, delay, deadline):
                raise value
            time.sleep(delay)


class AsyncCore(_Core):
    def __init__(self, *args: Any, http: httpx.AsyncClient | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = http or httpx.AsyncClient()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> Any:
        attempt = 0
        while True:
            attempt += 1
            response, error = None, None
            try:
                response = await self._http.request(
                    method, self.base_url + path, json=json, params=params,
                    headers=self._headers(headers), timeout=self._timeout(deadline),
                )  # fmt: skip
            except httpx.TransportError as exc:
                error = exc
            done, value, delay = self._outcome(attempt, deadline, response, error)
            if done:
                return value
            if not self._may_retry(attempt, delay, deadline):
                raise value
            await asyncio.sleep(delay)
