"""Send usage events to the usage queue, before the response returns, never losing one silently.

The event is sent synchronously (the process may freeze as soon as the handler returns), by a
client of its own with a short budget: ``USAGE_SEND_TIMEOUT_SECONDS`` (default 1) per attempt for
connecting and for the answer, two attempts at most, so a slow endpoint costs a request about 2 s
at worst instead of the shared client's 4 x 10 s. If the queue cannot be reached within that
budget, the event is written as one structured log line marked ``"reconcile": true`` with the
whole event, so it can be replayed from the logs (CloudWatch Logs Insights:
``filter reconcile = 1``); the caller still gets its answer.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Literal

from daarion_common.events import LlmCallEvent, ToolCallEvent
from daarion_common.observability import MetricUnit, logger, metrics
from daarion_common.settings import get_settings

UsageEventModel = LlmCallEvent | ToolCallEvent

DEFAULT_SEND_TIMEOUT_S = 1.0
SEND_ATTEMPTS = 2


def send_timeout_s() -> float:
    return float(os.environ.get("USAGE_SEND_TIMEOUT_SECONDS") or DEFAULT_SEND_TIMEOUT_S)


@lru_cache(maxsize=4)
def _sqs(region: str, endpoint_url: str | None, timeout_s: float) -> Any:
    """One SQS client per container (per endpoint, for tests that switch endpoints)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"mode": "standard", "total_max_attempts": SEND_ATTEMPTS},
        tcp_keepalive=True,
    )
    return boto3.session.Session().client("sqs", region_name=region, endpoint_url=endpoint_url or None, config=config)


def emit(event: UsageEventModel) -> Literal["queued", "reconcile"]:
    """Queue ``event`` on USAGE_QUEUE_URL; on failure log it for reconciliation. Never raises."""
    body = event.model_dump_json()
    settings = get_settings()
    queue_url = settings.usage_queue_url
    try:
        if not queue_url:
            raise RuntimeError("USAGE_QUEUE_URL is not set")
        _sqs(settings.aws_region, settings.aws_endpoint_url, send_timeout_s()).send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={"type": {"DataType": "String", "StringValue": event.type}},
        )
        return "queued"
    except Exception as exc:  # the queue is down or misconfigured: keep the event in the log instead
        logger.error(
            "usage event not queued; logged for reconciliation",
            extra={"reconcile": True, "usage_event": event.model_dump(mode="json"), "error_type": type(exc).__name__},
        )
        metrics.add_metric(name="UsageEventsToReconcile", unit=MetricUnit.Count, value=1)
        return "reconcile"
