"""A local Lambda Runtime API (one per execution environment) for functions that stream their response.

The function's process is exactly what the image runs (its ImageConfig EntryPoint + Command, e.g.
``python -m daarion_common.lambda_streaming llm_proxy.app.app``) with ``AWS_LAMBDA_RUNTIME_API`` pointing
here. This side plays Lambda: it hands out one event per ``GET /2018-06-01/runtime/invocation/next``
(with the request id, ``Lambda-Runtime-Deadline-Ms``, the function's ARN and a trace id), reads a
streamed ``POST .../response`` chunk by chunk as the runtime writes it (HTTP/1.1 chunked, trailers
included) and passes each chunk on the moment it arrives, and records ``.../error`` and
``/runtime/init/error``. It checks what AWS requires of a streaming runtime: the
``Lambda-Runtime-Function-Response-Mode: streaming`` and ``Transfer-Encoding: chunked`` headers, and
a ``Trailer`` header announcing any trailer sent.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Chunk:
    data: bytes


@dataclass
class End:
    """How the invocation ended: ``ok``, ``error`` (the runtime's /error: nothing was sent) or ``cut``
    (a streamed body ended with the error trailers)."""

    outcome: str
    error_type: str | None = None
    error: dict[str, Any] | None = None


@dataclass
class InvocationRecord:
    request_id: str
    event: dict[str, Any]
    deadline_ms: int
    events: queue.Queue[Chunk | End] = field(default_factory=queue.Queue)
    request_headers: dict[str, str] = field(default_factory=dict)  # of the runtime's POST .../response
    trailers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def iter_events(self, timeout_s: float | None = None) -> Any:
        """Chunks as they arrive, then the :class:`End` (raises ``TimeoutError`` past ``timeout_s``)."""
        until = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = None if until is None else max(0.0, until - time.monotonic())
            try:
                item = self.events.get(timeout=wait)
            except queue.Empty:
                raise TimeoutError(self.request_id) from None
            yield item
            if isinstance(item, End):
                return


class RuntimeApi:
    """One environment's Runtime API on loopback (port 0: the kernel picks)."""

    def __init__(self, function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local") -> None:
        self.function_arn = function_arn
        self.pending: queue.Queue[InvocationRecord] = queue.Queue()
        self.invocations: dict[str, InvocationRecord] = {}
        self.init_errors: list[dict[str, Any]] = []
        self.protocol_errors: list[str] = []
        self.waiting = threading.Event()  # a runtime is waiting in /next (its init is done)
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404, {"errorMessage": "unknown path"})
                    return
                api.waiting.set()
                record = api.pending.get()
                api.waiting.clear()
                self._reply(
                    200,
                    record.event,
                    {
                        "Lambda-Runtime-Aws-Request-Id": record.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(record.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                    },
                )

            def do_POST(self) -> None:
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_errors.append(self._json_body())
                    self._reply(202, {"status": "OK"})
                    return
                if len(parts) != 3 or parts[0] != "invocation" or parts[1] not in api.invocations:
                    self._reply(404, {"errorMessage": "unknown invocation"})
                    return
                record = api.invocations[parts[1]]
                if parts[2] == "error":
                    error = self._json_body()
                    record.events.put(End("error", self.headers.get("Lambda-Runtime-Function-Error-Type"), error))
                    self._reply(202, {"status": "OK"})
                elif parts[2] == "response":
                    record.request_headers = {k.lower(): v for k, v in self.headers.items()}
                    record.content_type = self.headers.get("Content-Type")
                    if self.headers.get("Lambda-Runtime-Function-Response-Mode") == "streaming":
                        self._streamed(record)
                    else:
                        record.events.put(Chunk(self._raw_body()))
                        record.events.put(End("ok"))
                    self._reply(202, {"status": "OK"})
                    self.close_connection = True
                else:
                    self._reply(404, {"errorMessage": "unknown path"})

            def _raw_body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _json_body(self) -> dict[str, Any]:
                raw = self._raw_body()
                try:
                    return json.loads(raw or b"{}")
                except ValueError:
                    return {"raw": raw.decode(errors="replace")}

            def _streamed(self, record: InvocationRecord) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    api.protocol_errors.append("streaming response without Transfer-Encoding: chunked")
                    record.events.put(Chunk(self._raw_body()))
                    record.events.put(End("ok"))
                    return
                announced = {t.strip().lower() for t in (self.headers.get("Trailer") or "").split(",") if t.strip()}
                while True:  # HTTP/1.1 chunked: "size\r\n data\r\n" ... "0\r\n" trailers "\r\n"
                    line = self.rfile.readline()
                    if not line:
                        record.events.put(End("cut", "Runtime.ConnectionLost"))
                        return
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    data = self.rfile.read(size)
                    self.rfile.read(2)
                    record.events.put(Chunk(data))
                while True:
                    line = self.rfile.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = line.decode("latin-1").partition(":")
                    record.trailers[key.strip().lower()] = value.strip()
                    if key.strip().lower() not in announced:
                        api.protocol_errors.append(f"trailer {key.strip()} was not announced in the Trailer header")
                error_type = record.trailers.get("lambda-runtime-function-error-type")
                if error_type:
                    body = record.trailers.get("lambda-runtime-function-error-body")
                    record.events.put(End("cut", error_type, _decode_error(body)))
                else:
                    record.events.put(End("ok"))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def invoke(self, event: dict[str, Any], timeout_s: float) -> InvocationRecord:
        """Queue one event for the runtime; read its answer from the record's events."""
        request_id = str(uuid.uuid4())
        record = InvocationRecord(request_id, event, int((time.time() + timeout_s) * 1000))
        self.invocations[request_id] = record
        self.pending.put(record)
        return record

    def forget(self, record: InvocationRecord) -> None:
        self.invocations.pop(record.request_id, None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _decode_error(body: str | None) -> dict[str, Any] | None:
    if not body:
        return None
    import base64

    try:
        return json.loads(base64.b64decode(body))
    except ValueError:
        return {"raw": body}


def split_prelude(buffer: bytes) -> tuple[dict[str, Any], bytes] | None:
    """An http-integration-response stream's prelude and what follows it, once the 8 NULs arrived."""
    at = buffer.find(b"\x00" * 8)
    if at < 0:
        return None
    return json.loads(buffer[:at] or b"{}"), buffer[at + 8 :]
