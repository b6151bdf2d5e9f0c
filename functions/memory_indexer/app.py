"""Memory indexer (SQS consumer and scheduled sweep).

Both triggers reach one handler: an SQS batch carries index requests; the schedule sends a
small JSON input. Embedding and writing to pgvector is not built yet (issue #5): requests are
validated and logged, and the sweep says plainly that it has nothing to do.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from daarion_common.events import IndexRequest
from daarion_common.observability import logger, metrics

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    request = IndexRequest.model_validate_json(record.body)
    logger.info(
        "index request validated; embedding is not built yet (issue #5)",
        extra={"event_id": request.event_id, "memory_ids": len(request.memory_ids), "document_id": request.document_id},
    )


def sweep(event: dict[str, Any]) -> dict[str, Any]:
    logger.info("scheduled sweep invoked; indexing is not built yet (issue #5)", extra={"input": event})
    return {"indexed": 0, "built": False}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    return sweep(event)
