"""The shared database helper against the real embedded PostgreSQL + pgvector."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest

from daarion_common import db
from daarion_common.errors import ApiError
from daarion_common.settings import get_settings


def test_migrations_apply_once_and_pgvector_is_registered(fresh_database):
    conn = db.connect(fresh_database)
    try:
        assert db.apply_migrations(conn) == []  # connect() already applied them
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == sorted(p.stem for p in db.MIGRATIONS_DIR.glob("*.sql"))
        conn.execute("CREATE TEMP TABLE v (e vector(3))")
        conn.execute("INSERT INTO v VALUES (%s)", (np.array([1.0, 2.0, 3.0]),))
        (value,) = conn.execute("SELECT e FROM v").fetchone()
        assert value.to_list() == [1.0, 2.0, 3.0]  # came back through the registered vector type
    finally:
        conn.close()


def test_concurrent_containers_apply_each_migration_exactly_once(fresh_database, tmp_path):
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);")
    (tmp_path / "0002_b.sql").write_text("UPDATE counter SET n = n + 1;")
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def container() -> None:
        try:
            with psycopg.connect(fresh_database, autocommit=True) as conn:
                applied.append(db.apply_migrations(conn, tmp_path))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=container) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(v for batch in applied for v in batch) == ["0001_a", "0002_b"]
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT n FROM counter").fetchone() == (2,)


def test_a_changed_migration_is_an_error_not_a_skip(fresh_database, tmp_path: Path):
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE t (x int);")
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        db.apply_migrations(conn, tmp_path)
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE t (x bigint);")
        with pytest.raises(RuntimeError, match="changed after it was applied"):
            db.apply_migrations(conn, tmp_path)


def test_a_failing_migration_leaves_nothing_half_applied(fresh_database, tmp_path: Path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE b (x int); SELECT no_such_function();")
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            db.apply_migrations(conn, tmp_path)
        assert conn.execute("SELECT to_regclass('b'), to_regclass('a')").fetchone() == (None, None)


def test_get_connection_reuses_and_reconnects(fresh_database, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    get_settings.cache_clear()
    db.close_connection()
    first = db.get_connection()
    assert db.get_connection() is first
    first.close()
    second = db.get_connection()
    assert second is not first and second.execute("SELECT 1").fetchone() == (1,)
    db.close_connection()


def test_unreachable_database_is_a_clear_503(tmp_path):
    with pytest.raises(ApiError) as err:
        db.connect(f"postgresql://postgres@/postgres?host={tmp_path}&port=1")
    assert err.value.status == 503 and err.value.code == "database_unavailable"


def test_no_database_configured_is_a_clear_503():
    with pytest.raises(ApiError) as err:
        db.database_url()
    assert err.value.code == "database_unconfigured"
