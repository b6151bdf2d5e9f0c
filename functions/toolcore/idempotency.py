"""At most once per idempotency key: Powertools idempotency on the DynamoDB table, one store per service.

Keyed by (tool, agent, microDAO, idempotency_key); the payload checked against the first call is the
``args`` (the same key with other args is refused). Only successful outcomes are kept: a failed call
raises out of the idempotent section, so its record is deleted and the caller may retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class IdempotencyStore:
    def __init__(self, table: str, dynamodb_client: Any = None, *, expires_after_seconds: int = 24 * 3600) -> None:
        self.table = table
        self._client = dynamodb_client
        self._expires = expires_after_seconds
        self._runner: tuple[Callable[..., dict[str, Any]], Any] | None = None
        self._lock = threading.Lock()

    def _build(self) -> tuple[Callable[..., dict[str, Any]], Any]:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        if self._client is None:
            from daarion_common.aws import client

            self._client = client("dynamodb")
        persistence = DynamoDBPersistenceLayer(table_name=self.table, boto3_client=self._client)
        config = IdempotencyConfig(
            event_key_jmespath="[tool_id, agent_id, microdao_id, idempotency_key]",
            payload_validation_jmespath="args",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=self._expires,
            use_local_cache=False,  # a container-local cache could answer for a key another container failed
        )

        @idempotent_function(data_keyword_argument="call", persistence_store=persistence, config=config)
        def run(call: dict[str, Any], execute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            return execute()

        return run, config

    def run(
        self, call: dict[str, Any], execute: Callable[[], dict[str, Any]], *, lambda_context: Any = None
    ) -> dict[str, Any]:
        """``execute()``'s result, stored under ``call``'s key — or the stored result of an earlier run.

        Raises Powertools' idempotency exceptions (validation, in progress, persistence) and whatever
        ``execute`` raises.
        """
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    self._runner = self._build()
        runner, config = self._runner
        if lambda_context is not None:  # an in-progress record expires with the invocation
            config.register_lambda_context(lambda_context)
        return runner(call=call, execute=execute)
