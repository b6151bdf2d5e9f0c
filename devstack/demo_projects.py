"""DEMO ONLY: a tiny stand-in for the DAARION projects API, served by the local stack so Toolcore's
``projects.list``, ``task.create`` and ``followup.create`` work out of the box. Not deployed, not a
real service: data lives in this process's memory and is lost when the stack stops.

It speaks Toolcore's HTTP tool contract: ``POST <path>`` with ``{"args": {...}, "context": {...}}``,
answering JSON. Paths: ``/projects/list``, ``/tasks/create``, ``/followups/create``; ``GET /health``.
``/projects/*`` and ``/tasks/*`` require ``Authorization: Bearer <token>`` (a token made per start and
given to Toolcore as its ``projects_api`` tool secret), to show secret injection end to end.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEMO_PROJECTS: dict[str, list[dict[str, str]]] = {
    "*": [
        {"id": "demo-proj-1", "name": "Community garden (demo)", "status": "active"},
        {"id": "demo-proj-2", "name": "Treasury report (demo)", "status": "active"},
        {"id": "demo-proj-3", "name": "Old website (demo)", "status": "archived"},
    ]
}


class DemoProjects:
    """The demo service on 127.0.0.1 (a free port unless given), in a daemon thread."""

    def __init__(self, port: int = 0, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.tasks: list[dict[str, Any]] = []
        self.followups: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def host_port(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> DemoProjects:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, args: dict[str, Any], context: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/projects/list":
            status = args.get("status", "active")
            projects = [p for p in DEMO_PROJECTS["*"] if status == "all" or p["status"] == status]
            return 200, {"projects": projects[: int(args.get("limit", 50))], "demo": True}
        if path == "/tasks/create":
            task = {
                "id": f"demo-task-{uuid.uuid4().hex[:8]}",
                "project_id": str(args.get("project_id", "")),
                "title": str(args.get("title", "")),
                "status": "open",
                "created_by": str(context.get("agent_id", "")),
            }
            with self._lock:
                self.tasks.append(task)
            return 200, {"task": task, "demo": True}
        if path == "/followups/create":
            followup_id = f"demo-followup-{uuid.uuid4().hex[:8]}"
            followup = {"id": followup_id, "at": str(args.get("at", "")), "status": "scheduled"}
            with self._lock:
                self.followups.append(followup)
            return 200, {"followup": followup, "demo": True}
        return 404, {"error": f"no demo route {path}"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        demo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._reply(200, {"status": "ok", "service": "demo-projects (local stack only)"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                    args, context = payload.get("args") or {}, payload.get("context") or {}
                except (ValueError, AttributeError):
                    self._reply(400, {"error": "expected {args, context}"})
                    return
                needs_token = self.path.startswith(("/projects/", "/tasks/"))
                if needs_token and self.headers.get("Authorization") != f"Bearer {demo.token}":
                    self._reply(401, {"error": "missing or wrong token"})
                    return
                self._reply(*demo.answer(self.path, args, context))

        return Handler
