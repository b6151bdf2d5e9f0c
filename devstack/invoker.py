"""Invoke local functions the way Lambda does: a pool of "containers" (function host processes) per
function, one invocation at a time in each, and the Lambda service's own answers at its limits.

- An invocation takes an idle container; if none is idle, a new one starts (a cold start, as in
  AWS), up to ``max_containers`` per function (DEVSTACK_MAX_CONTAINERS, a local resource cap:
  beyond it invocations wait for a free container instead of failing, since AWS would have started
  more). A function with reserved concurrency (the template's ``ReservedConcurrentExecutions``)
  is throttled beyond it with Lambda's 429 ``TooManyRequestsException``.
- A container found dead is dropped and counted as a crash; the next invocation starts a fresh one.
  An invocation that could not reach its container (it died while idle) is retried on a fresh one;
  one whose container died mid-invocation fails as Lambda reports it (``Runtime.ExitError``).
- The function's timeout stops the invocation: the container is killed, the result is Lambda's
  ``Task timed out`` error, and the next invocation gets a fresh container.
- An event over 6 MB is refused before any container sees it (413), a response over 6 MB is a
  function error, as in Lambda.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack import limits
from devstack.function_host import INVOKE_PATH


@dataclass
class InvokeResult:
    payload: Any
    function_error: bool
    request_id: str
    status: int = 200  # the Invoke API's status: 413 / 429 are Lambda refusing the invocation
    error_type: str | None = None
    cold_start: bool = False


class Throttled(Exception):
    pass


@dataclass
class Container:
    number: int
    proc: subprocess.Popen[bytes]
    url: str
    started_at: float = field(default_factory=time.time)
    init_ms: float = 0.0
    invocations: int = 0
    runtime: Any = None  # a streaming function's local Runtime API (devstack/runtime_api.py); None otherwise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close_runtime(self) -> None:
        if self.runtime is not None:
            self.runtime.close()


Spawn = Callable[[str, int], Container]  # (function, container number) -> a started, ready container


class FunctionPool:
    """The containers of one function."""

    def __init__(
        self,
        name: str,
        spawn: Spawn,
        *,
        timeout_s: float,
        max_containers: int,
        reserved: int | None,
        log: Callable[[str], None],
        streaming: bool = False,
    ) -> None:
        self.name, self.spawn, self.timeout_s, self.log = name, spawn, timeout_s, log
        self.streaming = streaming  # served through its Function URL (devstack/function_url.py), not Invoke
        self.max_containers = max(1, min(max_containers, reserved or max_containers))
        self.reserved = reserved
        self.idle: list[Container] = []
        self.busy: set[int] = set()
        self.all: dict[int, Container] = {}  # every container ever started and not yet reaped
        self.starting = 0
        self.numbers = 0
        self.counts: Counter[str] = Counter()
        self.cond = threading.Condition()

    # ------------------------------------------------------------ life of containers
    def _reap(self, container: Container, reason: str) -> None:
        """Forget a container (caller holds the lock); kill it if it still runs."""
        self.all.pop(container.number, None)
        self.busy.discard(container.number)
        if container in self.idle:
            self.idle.remove(container)
        if container.alive():
            container.proc.kill()
        container.close_runtime()
        code = container.proc.poll()
        self.counts[reason] += 1
        self.log(
            f"{self.name} container #{container.number} (pid {container.proc.pid}) {reason}"
            f"{f' (exit code {code})' if code is not None else ''}; the next invocation starts a fresh one"
        )
        self.cond.notify_all()

    def reap_dead(self) -> None:
        """The supervisor's sweep: drop idle containers whose process has died."""
        with self.cond:
            for container in [c for c in self.idle if not c.alive()]:
                self._reap(container, "crashed")

    def acquire(self, wait_until: float) -> tuple[Container, bool]:
        """An idle container, or a new one (cold start). Returns (container, cold)."""
        with self.cond:
            while True:
                while self.idle:
                    container = self.idle.pop()
                    if container.alive():
                        self.busy.add(container.number)
                        return container, False
                    self._reap(container, "crashed")
                in_use = len(self.busy) + self.starting
                if self.reserved is not None and in_use >= self.reserved:
                    self.counts["throttles"] += 1
                    raise Throttled(self.name)
                if in_use < self.max_containers:
                    self.starting += 1
                    self.numbers += 1
                    number = self.numbers
                    break
                remaining = wait_until - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no container free")
                self.counts["waits"] += 1
                self.cond.wait(timeout=min(remaining, 1.0))
        try:
            container = self.spawn(self.name, number)
        except BaseException:
            with self.cond:
                self.starting -= 1
                self.counts["init_failures"] += 1
                self.cond.notify_all()
            raise
        with self.cond:
            self.starting -= 1
            self.all[number] = container
            self.busy.add(number)
            self.counts["cold_starts"] += 1
        return container, True

    def release(self, container: Container) -> None:
        with self.cond:
            self.busy.discard(container.number)
            if container.number in self.all:
                self.idle.append(container)
            self.cond.notify_all()

    def discard(self, container: Container, reason: str) -> None:
        with self.cond:
            self._reap(container, reason)

    def stop_all(self) -> None:
        with self.cond:
            containers = list(self.all.values())
            self.all.clear()
            self.idle.clear()
        for container in containers:
            if container.alive():
                container.proc.terminate()
        for container in containers:
            try:
                container.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                container.proc.kill()
                container.proc.wait()
            container.close_runtime()

    def pids(self) -> list[int]:
        with self.cond:
            return [c.proc.pid for c in self.all.values() if c.alive()]

    def stats(self) -> dict[str, Any]:
        with self.cond:
            return {
                "invocations": self.counts["invocations"],
                "errors": self.counts["errors"],
                "containers": len(self.all),
                "busy": len(self.busy),
                "cold_starts": self.counts["cold_starts"],
                "crashed": self.counts["crashed"],
                "died_during_invocation": self.counts["died during an invocation"],
                "timed_out": self.counts["timed out"],
                "throttled": self.counts["throttles"],
                "init_failures": self.counts["init_failures"],
                "max_containers": self.max_containers,
                "reserved_concurrency": self.reserved,
                "pids": [c.proc.pid for c in self.all.values()],
            }


class Invoker:
    def __init__(self, pools: dict[str, FunctionPool]) -> None:
        self.pools = pools
        self._client = httpx.Client(limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        # Gateway invocations run here, so a request that outlives the API's deadline keeps running
        # (as a Lambda does) while the gateway answers.
        self._executor = ThreadPoolExecutor(max_workers=int(os.environ.get("DEVSTACK_INVOKE_THREADS", "128")))

    @property
    def endpoints(self) -> dict[str, FunctionPool]:
        return self.pools

    def invoke(self, function: str, event: Any, *, wait_s: float | None = None) -> InvokeResult:
        pool = self.pools[function]
        request_id = str(uuid.uuid4())
        if pool.streaming:
            message = f"{function} streams its response: invoke it through its Function URL"
            return InvokeResult(
                {"message": message, "Type": "User"}, False, request_id, 400, "InvalidRequestContentException"
            )
        payload = json.dumps(event).encode()
        if len(payload) > limits.LAMBDA_SYNC_REQUEST_BYTES:
            return InvokeResult(
                limits.lambda_request_too_large(), False, request_id, 413, "RequestEntityTooLargeException"
            )
        wait_until = time.monotonic() + (wait_s if wait_s is not None else pool.timeout_s + 60)
        try:
            return self._invoke(pool, payload, request_id, wait_until)
        except Throttled:
            return InvokeResult(limits.lambda_throttled(), False, request_id, 429, "TooManyRequestsException")
        finally:
            with pool.cond:
                pool.counts["invocations"] += 1

    def _invoke(self, pool: FunctionPool, payload: bytes, request_id: str, wait_until: float) -> InvokeResult:
        for _attempt in range(3):
            container, cold = pool.acquire(wait_until)
            try:
                response = self._client.post(
                    container.url + INVOKE_PATH,
                    content=payload,
                    headers={"content-type": "application/json", "x-amz-request-id": request_id},
                    timeout=httpx.Timeout(pool.timeout_s, connect=2.0),
                )
            except httpx.ConnectError:  # it died while idle: nothing reached it, so a fresh one takes the event
                pool.discard(container, "crashed")
                continue
            except httpx.TimeoutException:
                pool.discard(container, "timed out")  # Lambda stops the invocation at the function's timeout
                return self._error(pool, limits.lambda_timed_out(request_id, pool.timeout_s), request_id, cold)
            except httpx.TransportError as exc:
                pool.discard(container, "died during an invocation")
                detail = f"exit code {container.proc.poll()}" if not container.alive() else type(exc).__name__
                return self._error(pool, limits.lambda_runtime_exited(request_id, detail), request_id, cold)
            container.invocations += 1
            pool.release(container)
            if len(response.content) > limits.LAMBDA_SYNC_RESPONSE_BYTES:
                return self._error(pool, limits.lambda_response_too_large(len(response.content)), request_id, cold)
            function_error = bool(response.headers.get("x-amz-function-error"))
            if function_error:
                with pool.cond:
                    pool.counts["errors"] += 1
            return InvokeResult(response.json(), function_error, request_id, cold_start=cold)
        return self._error(
            pool, limits.lambda_runtime_exited(request_id, "no container could start"), request_id, False
        )

    def _error(self, pool: FunctionPool, payload: dict[str, str], request_id: str, cold: bool) -> InvokeResult:
        with pool.cond:
            pool.counts["errors"] += 1
        return InvokeResult(payload, True, request_id, error_type=payload["errorType"], cold_start=cold)

    async def ainvoke(self, function: str, event: Any, *, wait_s: float | None = None) -> InvokeResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self.invoke(function, event, wait_s=wait_s))

    def submit(self, function: str, event: Any, *, wait_s: float | None = None) -> asyncio.Future[InvokeResult]:
        """Start an invocation that keeps running even if the awaiting side stops waiting for it."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, lambda: self.invoke(function, event, wait_s=wait_s))

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: pool.stats() for name, pool in self.pools.items()}

    def reap_dead(self) -> None:
        for pool in self.pools.values():
            pool.reap_dead()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for pool in self.pools.values():
            pool.stop_all()
        self._client.close()
