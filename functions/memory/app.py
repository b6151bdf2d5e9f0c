"""Memory Orchestrator HTTP function: FastAPI app and its Lambda handler."""

from __future__ import annotations

from daarion_common.errors import not_built
from daarion_common.http_app import create_app, lambda_handler
from memory.models import QueryRequest, StoreRequest

app = create_app(
    "memory",
    health_path="/internal/agent-memory/health",
    description="Short, mid and long-term agent memory on PostgreSQL + pgvector.",
)


@app.post("/internal/agent-memory/query")
def query(request: QueryRequest) -> None:
    raise not_built("POST", "/internal/agent-memory/query", issue=5)


@app.post("/internal/agent-memory/store")
def store(request: StoreRequest) -> None:
    raise not_built("POST", "/internal/agent-memory/store", issue=5)


handler = lambda_handler(app)
