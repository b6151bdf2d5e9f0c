"""Values of the registry's named secrets, for the HTTP executor's headers only.

AWS: Secrets Manager through Powertools Parameters (cached ``SECRET_CACHE_SECONDS``), ARN from
``TOOL_SECRET_ARNS`` (JSON object name -> ARN, set by the template). Local (APP_ENV=local) only: the
environment variable ``TOOL_SECRET_<NAME>``. Values are never logged or returned.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from daarion_common.settings import get_settings


class SecretUnavailable(Exception):
    """The secret is not configured or cannot be read. The message names the secret, never a value."""


class SecretSource:
    """Reads tool secrets; holds its Secrets Manager provider (and its cache) for the container."""

    def __init__(self, provider: Any = None) -> None:
        self._provider = provider
        self._lock = threading.Lock()

    def _secrets_provider(self) -> Any:
        if self._provider is None:
            with self._lock:
                if self._provider is None:
                    from aws_lambda_powertools.utilities.parameters import SecretsProvider

                    from daarion_common.aws import client

                    self._provider = SecretsProvider(boto3_client=client("secretsmanager"))
        return self._provider

    def value(self, name: str) -> str:
        settings = get_settings()
        if settings.is_local:
            value = os.environ.get(f"TOOL_SECRET_{name.upper()}")
            if value:
                return value
        try:
            arns = json.loads(settings.tool_secret_arns or "{}")
        except ValueError as exc:
            raise SecretUnavailable("TOOL_SECRET_ARNS is not a JSON object") from exc
        arn = arns.get(name) if isinstance(arns, dict) else None
        if not arn:
            raise SecretUnavailable(f"secret '{name}' is not configured")
        try:
            value = self._secrets_provider().get(arn, max_age=settings.secret_cache_seconds)
        except Exception as exc:  # any failure to read it means the call cannot be made
            raise SecretUnavailable(f"secret '{name}' could not be read") from exc
        if isinstance(value, bytes):
            value = value.decode()
        if not value:
            raise SecretUnavailable(f"secret '{name}' is empty")
        return str(value)
