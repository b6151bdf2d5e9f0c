"""Memory indexer (SQS consumer and scheduled sweep).

- SQS: a batch of index requests (memory ids, or a knowledge-base document). The whole batch is
  embedded in one call and written in one statement; if that fails, each record is retried on its
  own and only the failing ones are reported (partial batch failures). Rows already embedded by the
  current model are never rewritten, so redelivery changes nothing.
- Schedule (``{"task": "sweep"}``): delete expired memories, embed whatever is still missing an
  embedding (as time allows), and sync knowledge-base documents from the S3 prefix by ETag.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from daarion_common.events import IndexRequest
from daarion_common.memory import indexing
from daarion_common.memory.database import connection, unavailable_as_503
from daarion_common.memory.embeddings import get_embedder
from daarion_common.observability import MetricUnit, logger, metrics

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
SWEEP_BATCH = 256
SWEEP_RESERVE_MS = 15_000  # stop embedding this long before the Lambda timeout


def _requests(event: dict[str, Any]) -> list[IndexRequest]:
    out = []
    for record in event.get("Records", []):
        try:
            out.append(IndexRequest.model_validate_json(record.get("body") or ""))
        except ValueError:
            continue  # reported by its record handler
    return out


def embed_batch(requests: list[IndexRequest]) -> int:
    """The fast path: every record of the batch in one embed call and one UPDATE."""
    ids = [i for r in requests for i in r.memory_ids]
    docs = [r.document_id for r in requests if r.document_id]
    if not ids and not docs:
        return 0
    embedder = get_embedder()
    conn = connection(embedder)
    with unavailable_as_503(conn):
        return indexing.embed_pending(conn, embedder, ids=ids, document_ids=docs)


def record_handler(record: SQSRecord) -> None:
    request = IndexRequest.model_validate_json(record.body)
    # After the batch pass this finds nothing to do; it does the work itself when that pass failed.
    written = embed_batch([request])
    logger.info(
        "index request done",
        extra={"event_id": request.event_id, "memory_ids": len(request.memory_ids), "written": written},
    )


def consume(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        written = embed_batch(_requests(event))
        metrics.add_metric(name="MemoriesEmbedded", unit=MetricUnit.Count, value=written)
    except Exception as exc:  # fall back to one record at a time, reporting only the ones that fail
        logger.warning("batch embedding failed; retrying record by record", extra={"error": repr(exc)[:300]})
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


def sweep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    embedder = get_embedder()
    conn = connection(embedder)
    with unavailable_as_503(conn):
        expired = indexing.delete_expired(conn)
    embedded = 0
    while context is None or context.get_remaining_time_in_millis() > SWEEP_RESERVE_MS:
        with unavailable_as_503(conn):
            written = indexing.embed_pending(conn, embedder, limit=SWEEP_BATCH)
        embedded += written
        if written < SWEEP_BATCH:
            break
    result: dict[str, Any] = {"task": "sweep", "expired": expired, "embedded": embedded}
    from daarion_common.memory.config import get_memory_settings

    settings = get_memory_settings()
    if settings.kb_bucket:
        from memory_indexer.s3sync import sync_bucket

        result["kb"] = sync_bucket(conn, settings.kb_bucket, settings.kb_prefix)
        with unavailable_as_503(conn):
            result["embedded"] += indexing.embed_pending(conn, embedder, limit=SWEEP_BATCH * 4)
    metrics.add_metric(name="MemoriesExpired", unit=MetricUnit.Count, value=expired)
    metrics.add_metric(name="MemoriesEmbedded", unit=MetricUnit.Count, value=result["embedded"])
    logger.info("sweep done", extra=result)
    return result


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "Records" in event:
        return consume(event, context)
    return sweep(event, context)
