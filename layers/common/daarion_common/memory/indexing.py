"""Writing embeddings: many texts per embed call, one UPDATE per batch, idempotent.

A row is (re-)embedded only while it has no embedding, one from another model, or one made in another
mode than its kind's (E5 ``query``/``passage``, ``EMBEDDING_QUERY_MODE_KINDS``), so a redelivered request
writes nothing, and a change of model or of modes is migrated row by row while the old vectors keep
answering searches.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daarion_common.memory.embeddings import INDEXER_AGENT_ID, mode_for
from daarion_common.memory.text import embedding_text

if TYPE_CHECKING:
    import psycopg

    from daarion_common.memory.embeddings import Embedder, Mode

# The mode a row's kind calls for, in SQL (parameters: %(has_modes)s, %(query_kinds)s).
_EXPECTED_MODE = (
    "CASE WHEN NOT %(has_modes)s THEN 'plain' WHEN kind = ANY(%(query_kinds)s::text[]) THEN 'query' ELSE 'passage' END"
)
# NULL mode: embedded before modes were recorded, as a passage.
_NEEDS_EMBEDDING = (
    f"(embedding IS NULL OR embedding_model IS DISTINCT FROM %(model)s "
    f"OR coalesce(embedding_mode, 'passage') IS DISTINCT FROM {_EXPECTED_MODE})"
)


@dataclass(frozen=True)
class Modes:
    """Which mode each kind is embedded in, for one embedder."""

    embedder: Embedder
    query_kinds: frozenset[str]

    def of(self, kind: str) -> Mode:
        return mode_for(self.embedder, kind, self.query_kinds)

    def params(self) -> dict[str, Any]:
        return {
            "model": self.embedder.model,
            "has_modes": self.embedder.has_modes,
            "query_kinds": sorted(self.query_kinds),
        }


@dataclass(frozen=True)
class Pending:
    id: str
    text: str
    content: dict[str, Any] | None
    kind: str
    microdao_id: str


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
    modes: Modes,
    *,
    ids: list[str] | None = None,
    document_ids: list[str] | None = None,
    limit: int | None = None,
) -> list[Pending]:
    """Rows that still need an embedding from this model in their kind's mode, oldest first."""
    where = [_NEEDS_EMBEDDING, "(expires_at IS NULL OR expires_at > now())"]
    params: dict[str, Any] = modes.params()
    if ids is not None or document_ids is not None:
        where.append("(id = ANY(%(ids)s::uuid[]) OR document_id = ANY(%(docs)s::uuid[]))")
        params["ids"] = valid_ids(ids or [])
        params["docs"] = valid_ids(document_ids or [])
    sql = (
        "SELECT id::text AS id, text, content, kind, microdao_id FROM memories "  # noqa: S608
        f"WHERE {' AND '.join(where)} ORDER BY created_at"
    )
    if limit is not None:
        sql += " LIMIT %(limit)s"
        params["limit"] = limit
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return [
            Pending(r["id"], r["text"], r["content"], r["kind"], r["microdao_id"])
            for r in cur.execute(sql, params).fetchall()
        ]


def write_embeddings(conn: psycopg.Connection[Any], model: str, ids: list[str], vectors: Any, modes: list[str]) -> int:
    """One statement for the whole batch; rows already embedded by ``model`` in that mode are left alone."""
    if not ids:
        return 0
    from pgvector import Vector

    cur = conn.execute(
        """UPDATE memories AS m
              SET embedding = v.embedding, embedding_model = %(model)s, embedding_mode = v.mode
             FROM unnest(%(ids)s::uuid[], %(vectors)s::vector[], %(modes)s::text[]) AS v(id, embedding, mode)
            WHERE m.id = v.id
              AND (m.embedding IS NULL OR m.embedding_model IS DISTINCT FROM %(model)s
                   OR m.embedding_mode IS DISTINCT FROM v.mode)""",
        {"model": model, "ids": ids, "vectors": [Vector(v) for v in vectors], "modes": modes},
    )
    return cur.rowcount


def embed_rows(rows: list[Pending], modes: Modes) -> tuple[list[str], list[Any], list[str]]:
    """Embed rows grouped by mode and microDAO (a remote embedder is called under the indexer's system id,
    costed to each row's microDAO): ids, vectors and modes in matching order."""
    groups: dict[tuple[str, str], list[Pending]] = defaultdict(list)
    for row in rows:
        groups[(modes.of(row.kind), row.microdao_id)].append(row)
    ids: list[str] = []
    vectors: list[Any] = []
    mode_list: list[str] = []
    for (mode, microdao_id), group in groups.items():
        texts = [embedding_text(r.text, r.content, mode) for r in group]
        embedded = modes.embedder.embed(texts, mode, (INDEXER_AGENT_ID, microdao_id))  # type: ignore[arg-type]
        ids.extend(r.id for r in group)
        vectors.extend(embedded)
        mode_list.extend([mode] * len(group))
    return ids, vectors, mode_list


def embed_pending(
    conn: psycopg.Connection[Any],
    modes: Modes,
    *,
    ids: list[str] | None = None,
    document_ids: list[str] | None = None,
    limit: int | None = None,
) -> int:
    rows = pending(conn, modes, ids=ids, document_ids=document_ids, limit=limit)
    if not rows:
        return 0
    row_ids, vectors, row_modes = embed_rows(rows, modes)
    return write_embeddings(conn, modes.embedder.model, row_ids, vectors, row_modes)


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
