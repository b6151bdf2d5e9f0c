"""Invoke a local function host the way AWS invokes a Lambda, and count what happened."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from devstack.function_host import INVOKE_PATH


@dataclass
class InvokeResult:
    payload: Any
    function_error: bool
    request_id: str


class Invoker:
    def __init__(self, endpoints: dict[str, str], timeouts: dict[str, int]) -> None:
        self.endpoints = endpoints  # logical id -> http://127.0.0.1:PORT
        self.timeouts = timeouts
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sync = httpx.Client()
        self._async: httpx.AsyncClient | None = None

    def _account(self, function: str, response: httpx.Response) -> InvokeResult:
        result = InvokeResult(
            payload=response.json(),
            function_error=bool(response.headers.get("x-amz-function-error")),
            request_id=response.headers.get("x-amz-request-id", ""),
        )
        with self._lock:
            self.counts[function] += 1
            if result.function_error:
                self.errors[function] += 1
        return result

    def invoke(self, function: str, event: dict[str, Any]) -> InvokeResult:
        url = self.endpoints[function] + INVOKE_PATH
        response = self._sync.post(url, json=event, timeout=self.timeouts[function] + 5)
        return self._account(function, response)

    async def ainvoke(self, function: str, event: dict[str, Any]) -> InvokeResult:
        if self._async is None:
            self._async = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
        url = self.endpoints[function] + INVOKE_PATH
        response = await self._async.post(url, json=event, timeout=self.timeouts[function] + 5)
        return self._account(function, response)

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {f: {"invocations": self.counts[f], "errors": self.errors[f]} for f in self.endpoints}

    def close(self) -> None:
        self._sync.close()
