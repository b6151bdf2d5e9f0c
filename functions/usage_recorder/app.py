"""Usage recorder (SQS consumer): usage events into the DynamoDB ledger, exactly once in effect.

Each record is validated against the shared event schema and written with its aggregates in one
DynamoDB transaction conditional on the event id (see ``daarion_common.usage_ledger``), so a
redelivered event changes nothing. Then the LLM Proxy's reservation is corrected on the rate-limit
counters to what the provider billed (``correct``: idempotent per counter item, off the proxy's hot path).
Schema versions 1 and 2 are both accepted (a rollout). A malformed record, or one whose write fails, is reported as a
batch item failure: SQS redelivers it, and after the queue's maxReceiveCount it sits in the DLQ —
without blocking the rest of the batch.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from daarion_common.aws import client
from daarion_common.events import usage_event_adapter
from daarion_common.observability import MetricUnit, logger, metrics
from daarion_common.settings import get_settings
from daarion_common.usage_ledger import correct
from daarion_common.usage_ledger import record as record_event

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    try:
        event = usage_event_adapter.validate_json(record.body)
    except ValidationError as exc:
        metrics.add_metric(name="UsageEventsMalformed", unit=MetricUnit.Count, value=1)
        logger.error(
            "malformed usage event; reported as a batch item failure (DLQ after maxReceiveCount)",
            extra={"message_id": record.message_id, "errors": exc.errors(include_url=False, include_input=False)},
        )
        raise
    settings = get_settings()
    if not settings.usage_table:
        raise RuntimeError("USAGE_TABLE is not set")
    dynamodb = client("dynamodb")
    if record_event(dynamodb, settings.usage_table, event, settings.usage_retention_days):
        metrics.add_metric(name="UsageEventsRecorded", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="UsageEventsDuplicate", unit=MetricUnit.Count, value=1)
        logger.info("duplicate usage event ignored", extra={"event_id": event.event_id})
    # Corrections run for a duplicate too (a crash may have come between the two steps): each counter
    # item applies an event's correction at most once.
    if settings.rate_limit_table and correct(dynamodb, settings.rate_limit_table, event):
        metrics.add_metric(name="LimitCorrections", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
