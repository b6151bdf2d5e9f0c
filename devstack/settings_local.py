"""Local-only constants of the stack."""

from __future__ import annotations

import os

# moto accepts any credentials; these keep boto3 from looking for real ones (and never reach AWS).
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}

PROVIDER_ENV = {
    "openai": "OPENAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "local": "LOCAL_LLM_BASE_URL",
}


def provider_status() -> str:
    """Which LLM providers the environment configures (never the keys themselves)."""
    parts = [
        f"{name}: {'configured' if os.environ.get(var) else f'off (no {var})'}" for name, var in PROVIDER_ENV.items()
    ]
    return "; ".join(parts)
