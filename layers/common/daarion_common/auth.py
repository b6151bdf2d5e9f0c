"""The X-Internal-Secret check every internal route requires.

Where the expected secret comes from, in order:
1. ``INTERNAL_SECRET`` in the environment (local stack, tests);
2. Secrets Manager (``INTERNAL_SECRET_ARN``) or SSM (``INTERNAL_SECRET_PARAM``) through Powertools
   Parameters, cached for ``SECRET_CACHE_SECONDS``;
3. locally only, ``dev-secret-token`` (what agent-runtime sends by default).
Deployed with none of these, every request is refused: the check fails closed.
"""

from __future__ import annotations

import hmac
from typing import Any

from daarion_common.errors import ApiError
from daarion_common.settings import LOCAL_DEFAULT_INTERNAL_SECRET, get_settings

HEADER = "x-internal-secret"

_secrets_provider: Any = None
_ssm_provider: Any = None


def _providers() -> tuple[Any, Any]:
    global _secrets_provider, _ssm_provider
    if _secrets_provider is None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

        from daarion_common.aws import client

        _secrets_provider = SecretsProvider(boto3_client=client("secretsmanager"))
        _ssm_provider = SSMProvider(boto3_client=client("ssm"))
    return _secrets_provider, _ssm_provider


def reset_cache() -> None:
    global _secrets_provider, _ssm_provider
    _secrets_provider = _ssm_provider = None


def expected_secret() -> str:
    """The secret callers must present. Raises ApiError(503) when it cannot be known (fail closed)."""
    settings = get_settings()
    if settings.internal_secret is not None and settings.internal_secret.get_secret_value():
        return settings.internal_secret.get_secret_value()
    if settings.internal_secret_arn or settings.internal_secret_param:
        secrets, ssm = _providers()
        try:
            if settings.internal_secret_arn:
                value = secrets.get(settings.internal_secret_arn, max_age=settings.secret_cache_seconds)
            else:
                value = ssm.get(settings.internal_secret_param, decrypt=True, max_age=settings.secret_cache_seconds)
        except Exception as exc:  # any failure to read the secret must refuse, not admit
            from daarion_common.observability import logger

            logger.error("internal secret could not be read", extra={"error_type": type(exc).__name__})
            raise ApiError(
                503, "auth_unavailable", "The internal secret could not be read; refusing all calls."
            ) from exc
        if isinstance(value, bytes):
            value = value.decode()
        if value:
            return str(value)
    if settings.is_local:
        return LOCAL_DEFAULT_INTERNAL_SECRET
    raise ApiError(503, "auth_unconfigured", "No internal secret is configured; refusing all calls.")


def verify(presented: str | None) -> None:
    """Raise ApiError(401) unless ``presented`` equals the expected secret (constant-time compare)."""
    expected = expected_secret()
    if not presented:
        raise ApiError(401, "unauthorized", "Missing X-Internal-Secret header.")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "Invalid X-Internal-Secret header.")
