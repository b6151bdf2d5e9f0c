"""What the routes do: store, query, summarize, forget, and the knowledge base.

One module-level connection per container (daarion_common.db), the embedder built once; every write
is one transaction, so a lost database is a 503 with nothing half-written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from daarion_common.errors import ApiError
from daarion_common.memory import indexing, kb
from daarion_common.memory.config import get_memory_settings
from daarion_common.memory.database import connection, unavailable_as_503
from daarion_common.memory.embeddings import EmbeddingUnavailable, get_embedder
from daarion_common.memory.text import content_hash, render
from daarion_common.observability import logger
from memory import retrieval

if TYPE_CHECKING:
    from daarion_contracts.memory import DocumentRequest, ForgetRequest, QueryRequest, StoreRequest, SummarizeRequest

_DEFAULT_SOURCE = {"conversation": "conversation", "kb": "kb", "task": "task", "dao-event": "dao-event"}


def _conn() -> Any:
    return connection(get_embedder())


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
def store(req: StoreRequest) -> dict[str, Any]:
    settings = get_memory_settings()
    text = render(req.content)
    if not text:
        raise ApiError(
            422,
            "invalid_request",
            "Invalid request: content: has no text",
            fields=[{"field": "content", "message": "has no text"}],
        )
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
        existing = conn.execute(
            """SELECT id::text FROM memories
                WHERE microdao_id = %s AND agent_id IS NOT DISTINCT FROM %s AND channel_id IS NOT DISTINCT FROM %s
                  AND kind = %s AND content_hash = %s AND document_id IS NULL
                  AND (expires_at IS NULL OR expires_at > now())""",
            scope,
        ).fetchone()
        if existing:
            return {"ok": True, "id": existing[0], "duplicate": True, "indexed": None}
        embedding, model = None, None
        embedder = get_embedder()
        if _inline_embedding():
            try:
                embedding, model = embedder.embed_passages([text])[0], embedder.model
            except EmbeddingUnavailable as exc:  # stored now, embedded by the indexer later
                logger.warning("inline embedding failed; queued instead", extra={"error": exc.message})
        from pgvector import Vector
        from psycopg.types.json import Jsonb

        row = conn.execute(
            """INSERT INTO memories (tier, kind, microdao_id, agent_id, channel_id, text, content, meta,
                                     embedding, embedding_model, content_hash, created_at, expires_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (microdao_id, agent_id, channel_id, kind, content_hash) WHERE document_id IS NULL
               DO UPDATE SET expires_at = EXCLUDED.expires_at
               RETURNING id::text, (xmax = 0) AS inserted, embedding IS NOT NULL""",
            (tier, req.kind, req.microdao_id, req.agent_id, req.channel_id, text,
             Jsonb(req.content) if isinstance(req.content, dict) else None, Jsonb(meta),
             Vector(embedding) if embedding is not None else None, model, digest, now, expires_at),
        ).fetchone()  # fmt: skip
    assert row is not None
    memory_id, inserted, embedded = row
    queued = False
    if not embedded:
        queued = enqueue_index(memory_ids=[memory_id])
    return {
        "ok": True,
        "id": memory_id,
        "duplicate": not inserted,
        "tier": tier,
        "indexed": "inline" if embedded else ("queued" if queued else "sweep"),
    }


# --------------------------------------------------------------------------- query
def _item(row: tuple[Any, ...], score: float, distance: float | None) -> dict[str, Any]:
    memory_id, kind, tier, agent_id, channel_id, text, content, meta, created_at, _is_chunk = row
    meta = dict(meta or {})
    out_meta: dict[str, Any] = {
        **meta,
        "source": meta.get("source") or _DEFAULT_SOURCE.get(kind, kind),
        "timestamp": meta.get("timestamp") or created_at.isoformat(),
        "created_at": created_at.isoformat(),
        "agent_id": agent_id,
        "channel_id": channel_id,
    }
    if content is not None:
        out_meta["content"] = content
    if distance is not None:
        out_meta["similarity"] = round(1.0 - distance, 4)
    return {"id": memory_id, "kind": kind, "tier": tier, "score": round(score, 6), "content": text, "meta": out_meta}


def query(req: QueryRequest) -> dict[str, Any]:
    settings = get_memory_settings()
    scope = retrieval.Scope(req.microdao_id, req.agent_id, req.channel_id, list(req.kinds) if req.kinds else None)
    k = max(req.limit * 3, 30)
    degraded: list[str] = []
    query_vector = None
    embedder = get_embedder()
    try:
        query_vector = embedder.embed_queries([req.query])[0]
    except EmbeddingUnavailable as exc:  # keyword and recency still answer
        logger.warning("query embedding failed; keyword search only", extra={"error": exc.message})
        degraded.append("vector")
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
        rows = conn.execute(retrieval.ROWS_SQL, {"ids": ids, "dao": req.microdao_id}).fetchall() if ids else []
    by_id = {r[0]: r for r in rows}  # ROWS_SQL re-checks the microDAO: isolation does not rest on one query
    hits = retrieval.fuse(
        legs, distances,
        created={r[0]: r[8] for r in rows}, kinds={r[0]: r[1] for r in rows},
        half_life_hours=settings.memory_recency_half_life_hours, coverage=dict(text_hits),
    )  # fmt: skip
    items = [_item(by_id[h.id], h.score, h.distance) for h in hits if h.id in by_id][: req.limit]
    out: dict[str, Any] = {"items": items, "results": items}
    if degraded:
        out["degraded"] = degraded
    return out


# --------------------------------------------------------------------------- forget
def forget_one(memory_id: str, microdao_id: str) -> dict[str, Any]:
    ids = indexing.valid_ids([memory_id])
    if not ids:
        raise ApiError(
            422,
            "invalid_request",
            "Invalid request: id: not a memory id",
            fields=[{"field": "id", "message": "not a memory id"}],
        )
    conn = _conn()
    with unavailable_as_503(conn):
        row = conn.execute(
            "DELETE FROM memories WHERE id = %s AND microdao_id = %s AND document_id IS NULL RETURNING id",
            (ids[0], microdao_id),
        ).fetchone()
    if row is None:
        raise ApiError(404, "not_found", f"No memory {memory_id} in microDAO {microdao_id}.")
    return {"ok": True, "deleted": 1}


def forget_scope(req: ForgetRequest) -> dict[str, Any]:
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
    return {"ok": True, "deleted": cur.rowcount}


# --------------------------------------------------------------------------- summarize
SUMMARY_PROMPT = (
    "You keep an AI agent's long-term memory. Summarise the conversation below into a short, factual note: "
    "who asked for what, decisions, facts worth remembering, open tasks with owners and dates. Write in the "
    "language the conversation mostly uses. No preamble."
)


def summarize(req: SummarizeRequest) -> dict[str, Any]:
    settings = get_memory_settings()
    limit = req.max_messages or settings.memory_summary_max_messages
    conn = _conn()
    with unavailable_as_503(conn):
        rows = conn.execute(
            """SELECT id::text, text, created_at FROM memories
                WHERE microdao_id = %s AND channel_id = %s AND kind = 'conversation'
                  AND coalesce(meta->>'source', '') <> 'summary'
                  AND (expires_at IS NULL OR expires_at > now())
                ORDER BY created_at DESC LIMIT %s""",
            (req.microdao_id, req.channel_id, limit),
        ).fetchall()
    if not rows:
        return {"ok": True, "id": None, "summary": None, "messages": 0}
    rows.reverse()
    transcript = "\n\n".join(f"[{r[2].isoformat(timespec='minutes')}] {r[1]}" for r in rows)
    summary = call_llm_proxy(
        model=req.model or settings.memory_summary_model,
        messages=[{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": transcript}],
        metadata={"agent_id": req.agent_id, "microdao_id": req.microdao_id, "channel_id": req.channel_id},
    )
    from daarion_contracts.memory import StoreRequest

    stored = store(
        StoreRequest(
            agent_id=req.agent_id, microdao_id=req.microdao_id, channel_id=req.channel_id, kind="conversation",
            tier="mid", content={"summary": summary},
            meta={"source": "summary", "messages": len(rows), "from": rows[0][2].isoformat(),
                  "to": rows[-1][2].isoformat()},
        )
    )  # fmt: skip
    return {"ok": True, "id": stored["id"], "summary": summary, "messages": len(rows)}


def call_llm_proxy(model: str, messages: list[dict[str, str]], metadata: dict[str, Any]) -> str:
    """POST {LLM_PROXY_URL}/internal/llm/proxy; any failure is a clear 502/503, never a crash."""
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


# --------------------------------------------------------------------------- knowledge base
def ingest_document(req: DocumentRequest) -> dict[str, Any]:
    import uuid

    settings = get_memory_settings()
    document_key = req.document_id or str(uuid.uuid4())
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
        elif get_embedder().in_process:  # no queue (local, single process): embed now
            with unavailable_as_503(conn):
                indexing.embed_pending(conn, get_embedder(), document_ids=[result.internal_id])
            indexing_mode = "inline"
        else:
            indexing_mode = "sweep"
    return {
        "ok": True,
        "document_id": document_key,
        "chunks": len(result.chunk_ids) if result.changed else None,
        "created": result.created,
        "changed": result.changed,
        "indexing": indexing_mode,
    }


def list_documents(microdao_id: str, limit: int, offset: int) -> dict[str, Any]:
    conn = _conn()
    with unavailable_as_503(conn):
        return {"documents": kb.list_documents(conn, microdao_id, limit, offset)}


def delete_document(microdao_id: str, document_id: str) -> dict[str, Any]:
    conn = _conn()
    with unavailable_as_503(conn):
        removed = kb.delete_document(conn, microdao_id, document_id)
    if removed is None:
        raise ApiError(404, "not_found", f"No document {document_id} in microDAO {microdao_id}.")
    return {"ok": True, "document_id": document_id, "deleted_chunks": removed}
