"""One local "container" for one Lambda function.

Runs in its own process with the function's environment from the template, imports the real
handler once (the init phase), and serves the Lambda Runtime Interface Emulator's invoke API:
``POST /2015-03-31/functions/function/invocations`` with the event as body. Invocations are
run on the main thread one at a time, as in a Lambda execution environment; the stack runs several
of these per function for concurrent invocations (devstack/invoker.py).

    python -m devstack.function_host --name LlmProxyFunction --handler llm_proxy.app.handler --port 9001
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INVOKE_PATH = "/2015-03-31/functions/function/invocations"


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, name: str, memory_mb: int, timeout_s: float, account_id: str = "123456789012") -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{account_id}:function:daarion-local-{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/daarion-local-{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Invoke(BaseHTTPRequestHandler):
    """Replaced by the real handler class once the function's handler is imported."""


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the invoker sends one event at a time; probes and retries may overlap
    daemon_threads = True


def load_handler(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def serve(name: str, handler_path: str, port: int, memory_mb: int, timeout_s: float, account_id: str) -> None:
    # Bind first (port 0: the kernel picks a free one) and say which, so parallel cold starts never race
    # for a port; the stack reads this line before anything else.
    server = _Server(("127.0.0.1", port), _Invoke)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    started = time.perf_counter()
    handler = load_handler(handler_path)
    init_ms = (time.perf_counter() - started) * 1000
    print(f"INIT {name} handler={handler_path} init_duration_ms={init_ms:.1f}", flush=True)
    # Lambda runs the handler on the runtime's main thread, one event at a time; HTTP threads only
    # hand events over to it (Mangum, for one, needs the main thread's event loop).
    pending: queue.Queue[tuple[dict[str, Any], Future[tuple[bytes, dict[str, str]]]]] = queue.Queue()

    def invoke(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        context = LambdaContext(name, memory_mb, timeout_s, account_id)
        begin = time.perf_counter()
        headers = {"X-Amz-Request-Id": context.aws_request_id}
        try:
            body = json.dumps(handler(event, context)).encode()
        except Exception as exc:  # reported to the caller as Lambda reports an unhandled error
            traceback.print_exc()
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": context.aws_request_id}
            body = json.dumps(error).encode()
            headers["X-Amz-Function-Error"] = "Unhandled"
        duration = (time.perf_counter() - begin) * 1000
        print(f"REPORT {name} RequestId: {context.aws_request_id} Duration: {duration:.2f} ms", flush=True)
        return body, headers

    class Invoke(_Invoke):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # readiness probe of the stack
            self._reply(200, json.dumps({"function": name, "ready": True}).encode())

        def do_POST(self) -> None:
            if self.path != INVOKE_PATH:
                self._reply(404, b'{"message": "unknown path"}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            event = json.loads(self.rfile.read(length) or b"{}")
            done: Future[tuple[bytes, dict[str, str]]] = Future()
            pending.put((event, done))
            body, headers = done.result()
            self._reply(200, body, headers)

    server.RequestHandlerClass = Invoke
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    parent = os.getppid()
    try:
        while os.getppid() == parent:  # never outlive the stack, even if it is killed with SIGKILL
            try:
                event, done = pending.get(timeout=0.5)
            except queue.Empty:
                continue
            done.set_result(invoke(event))
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--account", default="123456789012")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    serve(args.name, args.handler, args.port, args.memory, args.timeout, args.account)


if __name__ == "__main__":
    main()
