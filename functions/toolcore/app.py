"""Toolcore HTTP function: FastAPI app and its Lambda handler."""

from __future__ import annotations

from daarion_common.errors import not_built
from daarion_common.http_app import create_app, lambda_handler
from toolcore.models import ToolCallRequest

app = create_app(
    "toolcore", health_path="/internal/tools/health", description="Tool registry, permission checks and safe execution."
)


@app.get("/internal/tools")
def list_tools() -> None:
    raise not_built("GET", "/internal/tools", issue=6)


@app.post("/internal/tools/call")
def call_tool(request: ToolCallRequest) -> None:
    raise not_built("POST", "/internal/tools/call", issue=6)


handler = lambda_handler(app)
