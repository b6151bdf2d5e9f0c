"""Memory Orchestrator HTTP function: FastAPI app and its Lambda handler.

Heavy work (the database connection, the embedding model) is created on first use and kept for the
container's life; importing this module stays cheap. Every route declares its answer
(``response_model``) and each error it can return (``responses``) from ``daarion_contracts.memory``.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Path, Query

from daarion_common.http_app import create_app, lambda_handler
from daarion_contracts import memory as contract
from daarion_contracts.memory import (
    DocumentDeleted,
    DocumentList,
    DocumentRequest,
    DocumentResponse,
    ForgetRequest,
    ForgetResponse,
    QueryRequest,
    QueryResponse,
    StoreRequest,
    StoreResponse,
    SummarizeRequest,
    SummarizeResponse,
    route_errors,
)
from daarion_contracts.types import Identifier
from memory import service

app = create_app(
    "memory",
    openapi_path=contract.OPENAPI_PATH,
    health_path=contract.HEALTH_PATH,
    description="Short, mid and long-term agent memory on PostgreSQL + pgvector.",
)

MicrodaoId = Annotated[Identifier, Query(description="The microDAO the memory or document belongs to.")]


@app.post(contract.QUERY_PATH, response_model=QueryResponse, responses=route_errors(400, 401, 422, 500, 503))
def query(request: QueryRequest) -> QueryResponse:
    return service.query(request)


@app.post(contract.STORE_PATH, response_model=StoreResponse, responses=route_errors(400, 401, 422, 500, 503))
def store(request: StoreRequest) -> StoreResponse:
    return service.store(request)


@app.post(
    contract.SUMMARIZE_PATH,
    response_model=SummarizeResponse,
    responses=route_errors(
        400, 401, 422, (429, "rate_limited"), 500,
        (502, "llm_proxy_error"),
        (503, "database_unavailable", "database_unconfigured", "llm_proxy_unavailable", "llm_proxy_unconfigured",
         "auth_unconfigured"),
        (504, "llm_proxy_timeout"),
    ),
)  # fmt: skip
def summarize(request: SummarizeRequest) -> SummarizeResponse:
    return service.summarize(request)


@app.post(contract.FORGET_PATH, response_model=ForgetResponse, responses=route_errors(400, 401, 422, 500, 503))
def forget(request: ForgetRequest) -> ForgetResponse:
    return service.forget_scope(request)


@app.post(contract.DOCUMENTS_PATH, response_model=DocumentResponse, responses=route_errors(400, 401, 422, 500, 503))
def add_document(request: DocumentRequest) -> DocumentResponse:
    return service.ingest_document(request)


@app.get(contract.DOCUMENTS_PATH, response_model=DocumentList, responses=route_errors(401, 422, 500, 503))
def list_documents(
    microdao_id: MicrodaoId,
    limit: Annotated[int, Query(ge=1, le=contract.MAX_LIST_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=contract.MAX_LIST_OFFSET)] = 0,
) -> DocumentList:
    return service.list_documents(microdao_id, limit, offset)


@app.delete(contract.DOCUMENT_PATH, response_model=DocumentDeleted, responses=route_errors(401, 404, 422, 500, 503))
def delete_document(
    document_id: Annotated[Identifier, Path(description="The document's id (`document_id` when it was added).")],
    microdao_id: MicrodaoId,
) -> DocumentDeleted:
    return service.delete_document(microdao_id, document_id)


@app.delete(contract.MEMORY_PATH, response_model=ForgetResponse, responses=route_errors(401, 404, 422, 500, 503))
def forget_memory(
    memory_id: Annotated[UUID, Path(description="The memory's id, as `store` returned it.")],
    microdao_id: MicrodaoId,
) -> ForgetResponse:
    return service.forget_one(str(memory_id), microdao_id)


handler = lambda_handler(app)
