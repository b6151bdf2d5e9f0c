"""Start the whole local stack (`python -m devstack`) in a subprocess on free ports and wait for it.

Used by the end-to-end tests and by `make demo`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.settings_local import LOCAL_AWS_ENV

ROOT = Path(__file__).resolve().parents[1]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class LocalStack:
    proc: subprocess.Popen[bytes]
    log_path: Path
    state_dir: Path
    ports: tuple[int, int, int, int]
    stream_port: int = 0  # the LLM Proxy's long path (its Function URL)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def llm_proxy(self) -> str:
        return f"http://127.0.0.1:{self.ports[1]}"

    @property
    def llm_stream(self) -> str:
        """The LLM Proxy's long path: its Function URL with response streaming."""
        return f"http://127.0.0.1:{self.stream_port}"

    @property
    def memory(self) -> str:
        return f"http://127.0.0.1:{self.ports[2]}"

    @property
    def toolcore(self) -> str:
        return f"http://127.0.0.1:{self.ports[3]}"

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.gateway}/_local/status", timeout=5).json()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.status()["aws_endpoint"], region_name="us-east-1",
            aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT, as Ctrl-C
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_local_stack(
    state_dir: Path, *, ports: tuple[int, int, int, int] | None = None, env: dict[str, str] | None = None
) -> LocalStack:
    """Start the stack and wait until every port answers /health. The caller must call .stop()."""
    ports = ports or tuple(free_ports(4))  # type: ignore[assignment]
    stream_port = free_ports(1)[0]
    log_path = state_dir / "stack.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_URL", "INTERNAL_SECRET"))}
    full_env.update(
        DEVSTACK_PORTS=",".join(map(str, (*ports, stream_port))),
        DEVSTACK_MOTO_PORT="0",
        DEVSTACK_STATE_DIR=str(state_dir),
        DEVSTACK_RETRY_VISIBILITY_SECONDS="1",
    )
    full_env.update(env or {})
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack"], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    stack = LocalStack(proc, log_path, state_dir, ports, stream_port)  # type: ignore[arg-type]

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the local stack exited early:\n{stack.log[-5000:]}")
        return all(
            httpx.get(f"http://127.0.0.1:{p}/health", timeout=2).status_code == 200 for p in (*ports, stream_port)
        )

    try:
        wait_for(healthy, 180, "the local stack's /health on every port")
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def temporary_local_stack(prefix: str, env: dict[str, str] | None = None) -> Iterator[LocalStack]:
    """A stack with its own temporary state directory (outside pytest's pruned basetemp), stopped and
    removed on exit: what tests and benchmarks start."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        stack = start_local_stack(state, env=env)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
