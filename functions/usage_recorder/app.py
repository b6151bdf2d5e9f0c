"""Usage recorder (SQS consumer).

Validates each usage event against the shared schema and reports malformed records as batch
item failures, so they reach the DLQ after the queue's maxReceiveCount. Writing the events and
aggregates to DynamoDB is not built yet (issue #4): valid events are only logged.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from daarion_common.events import usage_event_adapter
from daarion_common.observability import MetricUnit, logger, metrics

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    event = usage_event_adapter.validate_json(record.body)
    logger.info(
        "usage event validated; recording to DynamoDB is not built yet (issue #4)",
        extra={"event_id": event.event_id, "event_type": event.type, "message_id": record.message_id},
    )
    metrics.add_metric(name="UsageEventsValidated", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
