"""PostgreSQL from Lambda: one connection per container, reused, with pgvector registered and the
SQL migrations applied idempotently (once per container, serialised across containers by an
advisory lock). In production the URL points at RDS Proxy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daarion_common.errors import ApiError
from daarion_common.settings import get_settings

if TYPE_CHECKING:
    import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 0x0DAA_1011  # pg_advisory_lock key shared by every container

_connection: psycopg.Connection[Any] | None = None


def database_url() -> str:
    """DATABASE_URL, or a conninfo built from the RDS-style JSON secret named by DB_SECRET_ARN."""
    settings = get_settings()
    if settings.database_url is not None and settings.database_url.get_secret_value():
        return settings.database_url.get_secret_value()
    if settings.db_secret_arn:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from psycopg.conninfo import make_conninfo

        from daarion_common.aws import client

        raw = SecretsProvider(boto3_client=client("secretsmanager")).get(
            settings.db_secret_arn, max_age=settings.secret_cache_seconds
        )
        secret = json.loads(raw if isinstance(raw, str) else raw.decode())
        return make_conninfo(
            host=secret["host"],
            port=str(secret.get("port", 5432)),
            user=secret.get("username", "postgres"),
            password=secret.get("password") or None,
            dbname=secret.get("dbname", "postgres"),
            connect_timeout="5",
        )
    raise ApiError(503, "database_unconfigured", "No database is configured (DATABASE_URL or DB_SECRET_ARN).")


def apply_migrations(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every ``NNNN_name.sql`` in order, each once, in its own transaction.

    Returns the versions applied by this call. Safe to call from many containers at once: an
    advisory lock serialises them, and applied versions are recorded with their checksum; a file
    changed after it was applied is an error, not a silent skip.
    """
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        # Configuration a migration may read (transaction-local): the embedding dimension of vector columns.
        conn.execute("SELECT set_config('daarion.embedding_dim', %s, true)", (str(get_settings().embedding_dim),))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        for path in sorted(directory.glob("*.sql")):
            sql = path.read_text(encoding="utf-8")
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            version = path.stem
            if version in done:
                if done[version] != checksum:
                    raise RuntimeError(f"migration {version} changed after it was applied; add a new migration instead")
                continue
            conn.execute(sql.encode())  # bytes: no client-side parameter parsing of the SQL text
            conn.execute("INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (version, checksum))
            applied_now.append(version)
    return applied_now


def connect(url: str | None = None, *, migrate: bool = True, connect_timeout: int = 5) -> psycopg.Connection[Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    try:
        conn = psycopg.connect(url or database_url(), autocommit=True, connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        raise ApiError(503, "database_unavailable", "The database cannot be reached; nothing was written.") from exc
    if migrate:
        try:
            apply_migrations(conn)
        except psycopg.OperationalError as exc:  # lost, or past a statement/lock timeout, while migrating
            conn.close()
            raise ApiError(503, "database_unavailable", "The database cannot be reached; nothing was written.") from exc
    register_vector(conn)
    return conn


def get_connection() -> psycopg.Connection[Any]:
    """The container's connection, reconnecting if the previous one was closed or broken."""
    global _connection
    if _connection is None or _connection.closed or _connection.broken:
        _connection = connect()
    return _connection


def close_connection() -> None:
    global _connection
    if _connection is not None and not _connection.closed:
        _connection.close()
    _connection = None
