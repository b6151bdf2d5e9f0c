"""Soak: the local stack under a steady mixed load for a working-day-like stretch, minute by minute.

Starts `python -m devstack` on free ports and drives it at a steady rate (per second: one LLM Proxy call
on the offline provider, one Toolcore call, one memory store, one memory query; agents and microDAOs
rotate so the proxy's limits do not throttle). Every minute it prints each process's memory (RSS), the
usage recorder's time per event (from its REPORT lines), the usage lag (a probe call -> counted by the
usage API) and p50/p99 per route. At the end it waits for the usage queue to drain and checks that every
usage event sent is counted (or logged for reconciliation): none lost.

    python -m bench soak                     # BENCH_SOAK_MINUTES (default 2)
    python -m bench.soak --minutes 30 --rate 1
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from devstack.launcher import LocalStack, start_local_stack

SECRET = {"X-Internal-Secret": "dev-secret-token"}
SPREAD = 50  # agents and microDAOs the load rotates over (10 calls/min/agent, 100/hour/microDAO by default)
_REPORT = re.compile(r"REPORT UsageRecorderFunction RequestId: \S+ Duration: ([\d.]+) ms")
_BATCH = re.compile(r"invoked UsageRecorderFunction with (\d+) SQS record")


class Load:
    def __init__(self, stack: LocalStack, run: str) -> None:
        self.stack, self.run = stack, run
        self.client = httpx.Client(timeout=60, headers=SECRET, limits=httpx.Limits(max_connections=64))
        self.lock = threading.Lock()
        self.samples: list[tuple[float, str, float, int]] = []  # (time, route, ms, status)
        self.usage_sent = 0  # calls that send exactly one usage event (LLM and tool calls that reached the handler)
        self.usage_unknown = 0  # calls answered with a 5xx: zero or one event each
        self.n = 0

    def _who(self) -> tuple[str, str]:
        with self.lock:
            self.n += 1
            n = self.n
        return f"{self.run}-a{n % SPREAD}", f"{self.run}-d{(n // 7) % SPREAD}"

    def _record(self, route: str, began: float, response: httpx.Response | None, usage: bool = False) -> None:
        status = response.status_code if response is not None else 599
        with self.lock:
            self.samples.append((time.time(), route, (time.perf_counter() - began) * 1000, status))
            if usage and status in (200, 429):
                self.usage_sent += 1
            elif usage and status >= 500:  # the gateway's cut (or a crash): the function may still have sent one
                self.usage_unknown += 1

    def _post(self, route: str, url: str, body: dict[str, Any], usage: bool = False) -> None:
        began = time.perf_counter()
        try:
            response: httpx.Response | None = self.client.post(url, json=body)
        except httpx.HTTPError:
            response = None
        self._record(route, began, response, usage)

    def llm(self) -> None:
        agent, dao = self._who()
        body = {
            "model": "gpt-4.1-mini",
            "messages": [{"role": "user", "content": "Що нового в проєкті?"}],
            "max_tokens": 64,
            "metadata": {"agent_id": agent, "microdao_id": dao, "channel_id": "soak"},
        }
        self._post("llm.proxy", f"{self.stack.llm_proxy}/internal/llm/proxy", body, usage=True)

    def tool(self) -> None:
        agent, dao = self._who()
        tool = "time.now" if self.n % 2 else "projects.list"
        args = {} if tool == "time.now" else {"microdao_id": dao}
        body = {"tool_id": tool, "agent_id": agent, "microdao_id": dao, "args": args}
        self._post("tools.call", f"{self.stack.toolcore}/internal/tools/call", body, usage=True)

    def store(self) -> None:
        agent, dao = self._who()
        body = {
            "agent_id": agent,
            "microdao_id": dao,
            "channel_id": "soak",
            "kind": "conversation",
            "content": {
                "user_message": f"Нагадай про звіт {self.n}",
                "agent_reply": "Звіт треба здати в п'ятницю.",
                "timestamp": datetime.now(UTC).isoformat(),
            },
        }
        self._post("memory.store", f"{self.stack.memory}/internal/agent-memory/store", body)

    def query(self) -> None:
        agent, dao = self._who()
        body = {"agent_id": agent, "microdao_id": dao, "channel_id": "soak", "query": "коли звіт?", "limit": 5}
        self._post("memory.query", f"{self.stack.memory}/internal/agent-memory/query", body)

    def counted(self, microdao: str) -> int:
        response = self.client.get(
            f"{self.stack.llm_proxy}/internal/llm/usage", params={"microdao_id": microdao, "kind": "all"}
        )
        totals = response.json()["totals"]
        return int(totals["requests"]) + int(totals["tool_calls"])


def usage_lag_s(load: Load, minute: int) -> float | None:
    """One probe call on a microDAO of its own, then poll the usage API until it is counted."""
    dao = f"{load.run}-probe-{minute}"
    body = {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "probe"}],
        "max_tokens": 8,
        "metadata": {"agent_id": f"{load.run}-probe", "microdao_id": dao, "channel_id": "soak"},
    }
    if load.client.post(f"{load.stack.llm_proxy}/internal/llm/proxy", json=body).status_code != 200:
        return None
    answered = time.perf_counter()
    while time.perf_counter() - answered < 60:
        if load.counted(dao) >= 1:
            return time.perf_counter() - answered
        time.sleep(0.2)
    return None


def memory_by_process(stack: LocalStack) -> dict[str, float]:
    """RSS in MB: the stack (gateway) process, moto, PostgreSQL (all its processes), each function's containers."""
    out: dict[str, float] = defaultdict(float)
    root = psutil.Process(stack.proc.pid)
    out["stack+gateway"] = root.memory_info().rss / 2**20
    status = stack.status()
    pg_pid = status["postgres"].get("pid")
    for child in root.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            rss = child.memory_info().rss / 2**20
        except psutil.Error:
            continue
        if "devstack.moto_server" in cmd:
            out["moto"] += rss
        elif "devstack.function_host" in cmd:
            name = cmd.split("--name ", 1)[1].split()[0].replace("Function", "")
            out[name] += rss
    if pg_pid:
        try:
            postmaster = psutil.Process(pg_pid)
            out["postgres"] = sum(p.memory_info().rss for p in [postmaster, *postmaster.children()]) / 2**20
        except psutil.Error:
            pass
    return dict(out)


def recorder_ms_per_event(log_chunk: str) -> tuple[float | None, int]:
    durations = [float(m) for m in _REPORT.findall(log_chunk)]
    records = sum(int(m) for m in _BATCH.findall(log_chunk))
    return (sum(durations) / records if records else None), records


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def soak(minutes: float, rate: float) -> None:
    state = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    stack = start_local_stack(state, env={"OPENAI_API_KEY": "", "DEEPSEEK_API_KEY": "", "LOCAL_LLM_BASE_URL": ""})
    run = f"soak-{uuid.uuid4().hex[:6]}"
    load = Load(stack, run)
    print(
        f"Soak: {minutes:g} min at {rate:g} x (1 LLM call + 1 tool call + 1 memory store + 1 memory query) per second"
    )
    print("memory = RSS MB per process (function columns: all its containers); recorder = ms per usage event;")
    print("lag = a probe call's answer -> counted by the usage API (s); p50/p99 ms per route")
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=32)

    def drive() -> None:
        tick = 1.0 / rate
        next_at = time.perf_counter()
        while not stop.is_set():
            for job in (load.llm, load.tool, load.store, load.query):
                pool.submit(job)
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))

    driver = threading.Thread(target=drive, daemon=True)
    began = time.time()
    driver.start()
    log_offset = stack.log_path.stat().st_size
    rows = []
    try:
        for minute in range(1, int(minutes) + 1):
            time.sleep(max(0.0, began + minute * 60 - time.time()))
            with stack.log_path.open("rb") as fh:
                fh.seek(log_offset)
                chunk = fh.read().decode(errors="replace")
                log_offset = fh.tell()
            per_event, records = recorder_ms_per_event(chunk)
            lag = usage_lag_s(load, minute)
            mem = memory_by_process(stack)
            with load.lock:
                window = [s for s in load.samples if began + (minute - 1) * 60 <= s[0] < began + minute * 60]
            routes: dict[str, list[float]] = defaultdict(list)
            failures = 0
            for _, route, ms, status in window:
                routes[route].append(ms)
                failures += status >= 500
            rows.append((minute, mem, per_event, records, lag, routes, failures))
            mem_text = " ".join(f"{k}={v:.0f}" for k, v in sorted(mem.items()))
            route_text = " ".join(f"{r}={_pct(v, 0.5):.0f}/{_pct(v, 0.99):.0f}" for r, v in sorted(routes.items()) if v)
            print(
                f"min {minute:>3} | mem {mem_text} | recorder "
                f"{f'{per_event:.1f}' if per_event is not None else '-'} ms/event ({records} ev) | lag "
                f"{f'{lag:.1f}' if lag is not None else '-'} s | {route_text} | 5xx {failures}",
                flush=True,
            )
    finally:
        stop.set()
        driver.join()
        pool.shutdown(wait=True)
    try:
        _closing(stack, load, rows)
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


def _closing(stack: LocalStack, load: Load, rows: list[Any]) -> None:
    sqs = stack.client("sqs")
    queue = stack.status()["queues"]["UsageQueue"]
    deadline = time.time() + 300
    while time.time() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        time.sleep(1)
    counted = sum(load.counted(f"{load.run}-d{i}") for i in range(SPREAD))
    reconciled = stack.log.count('"reconcile": true') + stack.log.count('"reconcile":true')
    dlq = stack.status()["queues"].get("UsageDeadLetterQueue")
    dead = int(sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
        "ApproximateNumberOfMessages"]) if dlq else 0  # fmt: skip
    # Every answered call sent one event; a call the gateway cut may have sent one too (the function runs on).
    lost = max(0, load.usage_sent - counted - reconciled)
    total = len(load.samples)
    failures = sum(1 for s in load.samples if s[3] >= 500)
    print(
        f"\nclosing: {total} requests, {failures} 5xx; usage events sent {load.usage_sent} by answered calls "
        f"(+ up to {load.usage_unknown} by calls answered 5xx), counted {counted}, logged for reconciliation "
        f"{reconciled}, in the DLQ {dead}, lost {lost}"
    )
    if len(rows) >= 2:
        first, last = rows[0][1], rows[-1][1]
        growth = {k: last[k] - first.get(k, 0.0) for k in last}
        print(
            "memory change first -> last minute (MB): " + " ".join(f"{k}={v:+.0f}" for k, v in sorted(growth.items()))
        )
        per_event = [r[2] for r in rows if r[2] is not None]
        if per_event:
            median = statistics.median(per_event)
            print(f"recorder ms/event: first {per_event[0]:.1f}, last {per_event[-1]:.1f}, median {median:.1f}")
    print(f"final status: {stack.status()['functions']['UsageRecorderFunction']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("BENCH_SOAK_MINUTES", "2")))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("BENCH_SOAK_RATE", "1")))
    args = parser.parse_args(argv if argv is not None else [])
    soak(args.minutes, args.rate)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
