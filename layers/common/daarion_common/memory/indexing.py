"""Writing embeddings: many texts per embed call, one UPDATE per batch, idempotent.

A row is (re-)embedded only while it has no embedding or one from another model, so a redelivered
request writes nothing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from daarion_common.memory.embeddings import Embedder

_NEEDS_EMBEDDING = "(embedding IS NULL OR embedding_model IS DISTINCT FROM %(model)s)"


def valid_ids(ids: list[str]) -> list[str]:
    out = []
    for value in ids:
        try:
            out.append(str(uuid.UUID(value)))
        except (ValueError, TypeError, AttributeError):
            continue
    return out


def pending(
    conn: psycopg.Connection[Any],
    model: str,
    *,
    ids: list[str] | None = None,
    document_ids: list[str] | None = None,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """(id, text) of rows that still need an embedding from ``model``."""
    where = [_NEEDS_EMBEDDING, "(expires_at IS NULL OR expires_at > now())"]
    params: dict[str, Any] = {"model": model}
    if ids is not None or document_ids is not None:
        where.append("(id = ANY(%(ids)s::uuid[]) OR document_id = ANY(%(docs)s::uuid[]))")
        params["ids"] = valid_ids(ids or [])
        params["docs"] = valid_ids(document_ids or [])
    sql = f"SELECT id::text AS id, text FROM memories WHERE {' AND '.join(where)} ORDER BY created_at"  # noqa: S608
    if limit is not None:
        sql += " LIMIT %(limit)s"
        params["limit"] = limit
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return [(r["id"], r["text"]) for r in cur.execute(sql, params).fetchall()]


def write_embeddings(conn: psycopg.Connection[Any], model: str, ids: list[str], vectors: Any) -> int:
    """One statement for the whole batch; rows already embedded by ``model`` are left alone."""
    if not ids:
        return 0
    from pgvector import Vector

    cur = conn.execute(
        """UPDATE memories AS m
              SET embedding = v.embedding, embedding_model = %(model)s
             FROM unnest(%(ids)s::uuid[], %(vectors)s::vector[]) AS v(id, embedding)
            WHERE m.id = v.id AND (m.embedding IS NULL OR m.embedding_model IS DISTINCT FROM %(model)s)""",
        {"model": model, "ids": ids, "vectors": [Vector(v) for v in vectors]},
    )
    return cur.rowcount


def embed_pending(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    *,
    ids: list[str] | None = None,
    document_ids: list[str] | None = None,
    limit: int | None = None,
) -> int:
    rows = pending(conn, embedder.model, ids=ids, document_ids=document_ids, limit=limit)
    if not rows:
        return 0
    vectors = embedder.embed_passages([text for _, text in rows])
    return write_embeddings(conn, embedder.model, [i for i, _ in rows], vectors)


def delete_expired(conn: psycopg.Connection[Any], batch: int = 5000) -> int:
    total = 0
    while True:
        cur = conn.execute(
            """DELETE FROM memories WHERE id IN (
                   SELECT id FROM memories WHERE expires_at <= now() LIMIT %s)""",
            (batch,),
        )
        total += cur.rowcount
        if cur.rowcount < batch:
            return total
