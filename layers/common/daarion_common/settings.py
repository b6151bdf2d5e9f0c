"""Settings read from environment variables.

The names are the ones `template.yaml` sets in `Globals` and per function; the local stack sets the
same names from the same template, so there is one list of knobs, not two.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# What agent-runtime sends by default; accepted only when APP_ENV=local.
LOCAL_DEFAULT_INTERNAL_SECRET = "dev-secret-token"  # noqa: S105 - a documented local default, not a credential


def _default_env() -> str:
    # Inside a real Lambda the runtime sets AWS_LAMBDA_FUNCTION_NAME; anywhere else we are local.
    return "aws" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "local"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    app_env: Literal["local", "aws"] = Field(default_factory=_default_env)
    service_name: str = Field(default="daarion", alias="POWERTOOLS_SERVICE_NAME")

    aws_region: str = Field(default="us-east-1", alias="AWS_REGION")
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")

    # The X-Internal-Secret agent-runtime sends. INTERNAL_SECRET wins (local, tests); otherwise the
    # secret is read from Secrets Manager (INTERNAL_SECRET_ARN) or SSM (INTERNAL_SECRET_PARAM).
    internal_secret: SecretStr | None = None
    internal_secret_arn: str | None = None
    internal_secret_param: str | None = None
    secret_cache_seconds: int = 300

    # PostgreSQL: DATABASE_URL wins; otherwise an RDS-style JSON secret (host, port, username, ...).
    database_url: SecretStr | None = None
    db_secret_arn: str | None = None
    embedding_dim: int = 384

    usage_queue_url: str | None = None
    index_queue_url: str | None = None
    usage_table: str | None = None
    rate_limit_table: str | None = None
    idempotency_table: str | None = None
    usage_retention_days: int = Field(default=90, ge=1)

    # Toolcore: where its shipped tools point, hosts exempt from the SSRF address check
    # (comma-separated host or host:port), and the Secrets Manager ARNs of its named tool secrets
    # (a JSON object name -> ARN).
    projects_api_url: str | None = None
    followups_api_url: str | None = None
    tool_host_allowlist: str | None = None
    tool_secret_arns: str | None = None

    # The LLM Proxy's provider keys in AWS: a JSON secret {"openai": "sk-...", "deepseek": "..."}.
    llm_provider_secret_arn: str | None = None

    @property
    def is_local(self) -> bool:
        return self.app_env == "local"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this container. Tests that change the environment call `get_settings.cache_clear()`."""
    return Settings()
