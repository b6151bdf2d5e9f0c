"""The memory functions' view of PostgreSQL: the container's connection, checked once against the
embedder's dimension, and database failures turned into a clear 503."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from daarion_common import db
from daarion_common.errors import ApiError

if TYPE_CHECKING:
    import psycopg

    from daarion_common.memory.embeddings import Embedder

_checked: set[int] = set()


class EmbeddingDimensionMismatch(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(500, "embedding_dimension_mismatch", message)


def column_dimension(conn: psycopg.Connection[Any]) -> int | None:
    """The declared dimension of memories.embedding (pgvector keeps it as the type modifier)."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
        ).fetchone()
    return None if row is None or row["atttypmod"] < 0 else int(row["atttypmod"])


def check_dimension(conn: psycopg.Connection[Any], embedder: Embedder) -> None:
    table_dim = column_dimension(conn)
    if table_dim != embedder.dim:
        raise EmbeddingDimensionMismatch(
            f"The embedder {embedder.model} makes {embedder.dim}-d vectors but memories.embedding is "
            f"vector({table_dim}). Set EMBEDDING_DIM/EMBEDDING_MODEL to match, or run "
            f"`python -m memory_indexer.reembed --dimension {embedder.dim}` to migrate the table."
        )


def connection(embedder: Embedder | None = None) -> psycopg.Connection[Any]:
    """The container's connection; the first time, the embedder's dimension is checked against the table."""
    conn = db.get_connection()
    if embedder is not None and id(conn) not in _checked:
        with unavailable_as_503(conn):
            check_dimension(conn, embedder)
        _checked.add(id(conn))
    return conn


@contextlib.contextmanager
def unavailable_as_503(conn: psycopg.Connection[Any] | None = None) -> Iterator[None]:
    """A connection lost mid-request is a 503 (the transaction was rolled back: nothing half-written)."""
    import psycopg

    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if conn is not None and (conn.closed or conn.broken):
            db.close_connection()
        raise ApiError(503, "database_unavailable", "The database cannot be reached; nothing was written.") from exc
