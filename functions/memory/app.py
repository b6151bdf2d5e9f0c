"""Memory Orchestrator HTTP function: FastAPI app and its Lambda handler.

Heavy work (the database connection, the embedding model) is created on first use and kept for the
container's life; importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from fastapi import Query

from daarion_common.http_app import create_app, lambda_handler
from daarion_contracts.memory import DocumentRequest, ForgetRequest, QueryRequest, StoreRequest, SummarizeRequest
from memory import service

app = create_app(
    "memory",
    openapi_path="/internal/agent-memory/openapi.json",
    health_path="/internal/agent-memory/health",
    description="Short, mid and long-term agent memory on PostgreSQL + pgvector.",
)

_MicrodaoId = Query(min_length=1, max_length=200)


@app.post("/internal/agent-memory/query")
def query(request: QueryRequest) -> dict[str, Any]:
    return service.query(request)


@app.post("/internal/agent-memory/store")
def store(request: StoreRequest) -> dict[str, Any]:
    return service.store(request)


@app.post("/internal/agent-memory/summarize")
def summarize(request: SummarizeRequest) -> dict[str, Any]:
    return service.summarize(request)


@app.post("/internal/agent-memory/forget")
def forget(request: ForgetRequest) -> dict[str, Any]:
    return service.forget_scope(request)


@app.post("/internal/agent-memory/kb/documents")
def add_document(request: DocumentRequest) -> dict[str, Any]:
    return service.ingest_document(request)


@app.get("/internal/agent-memory/kb/documents")
def list_documents(
    microdao_id: str = _MicrodaoId, limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0)
) -> dict[str, Any]:
    return service.list_documents(microdao_id, limit, offset)


@app.delete("/internal/agent-memory/kb/documents/{document_id}")
def delete_document(document_id: str, microdao_id: str = _MicrodaoId) -> dict[str, Any]:
    return service.delete_document(microdao_id, document_id)


@app.delete("/internal/agent-memory/{memory_id}")
def forget_memory(memory_id: str, microdao_id: str = _MicrodaoId) -> dict[str, Any]:
    return service.forget_one(memory_id, microdao_id)


handler = lambda_handler(app)
