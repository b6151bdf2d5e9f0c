"""The memory functions' view of PostgreSQL: one connection per container, with connect and statement
timeouts from configuration, checked once against the embedder's dimension, one transparent retry when
the server closed the connection, and every other database failure a clear 503.

Why a retry is safe: a connection the server closed while the container was idle or frozen (RDS
Proxy's idle timeout, a failover, ``pg_terminate_backend``) fails the *next* statement before it runs.
Every operation the memory functions hand to :meth:`Database.run` is also safe to run twice should the
connection drop mid-statement instead: writes are one transaction each, and a store repeated is a
duplicate of itself (the unique scope index), a document re-ingested is unchanged, a delete repeated
deletes nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from daarion_common import db
from daarion_common.errors import ApiError
from daarion_common.observability import logger

if TYPE_CHECKING:
    import psycopg

    from daarion_common.memory.embeddings import Embedder

T = TypeVar("T")


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


class Database:
    """The container's connection to the memory database.

    ``url`` is the conninfo or a function returning it (DATABASE_URL, or the RDS-style secret read
    lazily). The statement timeout is set on the session, so it bounds every statement, a wait for a
    lock included: a stalled database answers 503 ``database_timeout`` within it.
    """

    def __init__(
        self,
        url: str | Callable[[], str] | None = None,
        *,
        embedder: Embedder | None = None,
        connect_timeout_s: int = 5,
        statement_timeout_ms: int = 8_000,
        migrate: bool = True,
    ) -> None:
        self._url = url
        self.embedder = embedder
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self.migrate = migrate
        self._conn: psycopg.Connection[Any] | None = None
        self.reconnects = 0  # connections replaced after the server closed one (observability, tests)

    def url(self) -> str:
        if self._url is None:
            return db.database_url()
        return self._url() if callable(self._url) else self._url

    def connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one (migrated, dimension checked, timeouts set)."""
        import psycopg

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.discard()
        conn = db.connect(self.url(), migrate=self.migrate, connect_timeout=self.connect_timeout_s)
        try:
            # A session setting, not a startup option: RDS Proxy does not forward startup options. The
            # session is pinned to one database connection for its life, which one connection per
            # container already is.
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{self.statement_timeout_ms}ms",))
            if self.embedder is not None:
                check_dimension(conn, self.embedder)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise _as_api_error(exc) from exc
            raise
        self._conn = conn
        return conn

    def discard(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def run(self, operation: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``operation(connection)``; retried once on a fresh connection when the server closed the
        one it was given; any other database failure is a 503 (the transaction was rolled back)."""
        import psycopg

        for attempt in (1, 2):
            conn = self.connection()
            try:
                return operation(conn)
            except psycopg.Error as exc:
                lost = conn.closed or conn.broken
                if lost:
                    self.discard()
                if lost and attempt == 1:
                    self.reconnects += 1
                    logger.warning("database connection closed by the server; retrying once on a new one",
                                   extra={"error": type(exc).__name__})  # fmt: skip
                    continue
                if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.OperationalError | psycopg.InterfaceError):
                    raise _as_api_error(exc) from exc
                raise  # a bug (bad SQL, a violated constraint): a 500, logged
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.discard()


def _as_api_error(exc: Exception) -> ApiError:
    import psycopg

    if isinstance(exc, psycopg.errors.QueryCanceled):  # statement_timeout (or a lock wait past it)
        return ApiError(503, "database_timeout", "The database did not answer in time; nothing was written.")
    return ApiError(503, "database_unavailable", "The database cannot be reached; nothing was written.")
