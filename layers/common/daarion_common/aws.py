"""boto3 clients, created once per container and honouring AWS_ENDPOINT_URL (moto or LocalStack locally)."""

from __future__ import annotations

from functools import cache
from typing import Any

from daarion_common.settings import get_settings


@cache
def client(service: str) -> Any:
    """A module-level-cached boto3 client with adaptive retries and short timeouts.

    boto3 is imported here, not at module import, so functions whose cold path does not touch
    AWS (the /health route, say) do not pay for it.
    """
    import boto3
    from botocore.config import Config

    settings = get_settings()
    config = Config(
        retries={"mode": "adaptive", "max_attempts": 4},
        connect_timeout=2,
        read_timeout=10,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url or None,
        config=config,
    )


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints)."""
    client.cache_clear()
