"""Send usage events to the usage queue, before the response returns, never losing one silently.

The event is sent synchronously (the process may freeze as soon as the handler returns). If the
queue cannot be reached after the client's retries, the event is written as one structured log
line marked ``"reconcile": true`` with the whole event, so it can be replayed from the logs
(CloudWatch Logs Insights: ``filter reconcile = 1``); the caller still gets its answer.
"""

from __future__ import annotations

from typing import Literal

from daarion_common.events import LlmCallEvent, ToolCallEvent
from daarion_common.observability import MetricUnit, logger, metrics
from daarion_common.settings import get_settings

UsageEventModel = LlmCallEvent | ToolCallEvent


def emit(event: UsageEventModel) -> Literal["queued", "reconcile"]:
    """Queue ``event`` on USAGE_QUEUE_URL; on failure log it for reconciliation. Never raises."""
    body = event.model_dump_json()
    queue_url = get_settings().usage_queue_url
    try:
        if not queue_url:
            raise RuntimeError("USAGE_QUEUE_URL is not set")
        from daarion_common.aws import client

        client("sqs").send_message(
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
