"""The OpenAI-compatible embedder as deployed: its key read from Secrets Manager (moto's server over
HTTP), every call naming the agent and microDAO it is for, against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import uuid

import psycopg

from tests.fixtures.memory import reset_memory_state

DAO, AGENT = "microdao:7", "agent:sofia"


def test_the_remote_embedder_reads_its_key_from_secrets_manager_and_sends_identity(
    aws, memory_api, memory_db, scripted_llm, monkeypatch, lambda_context
):
    key = f"sk-embed-{uuid.uuid4().hex}"
    arn = aws.client("secretsmanager").create_secret(
        Name=f"embedder-{uuid.uuid4().hex[:8]}", SecretString=json.dumps({"api_key": key})
    )["ARN"]
    server = scripted_llm("embedder")  # answers /v1/embeddings with 4-d vectors
    monkeypatch.setenv("EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("EMBEDDING_BASE_URL", server.base_url)
    monkeypatch.setenv("EMBEDDING_MODEL", "text-embedding-3-small")
    monkeypatch.setenv("EMBEDDING_DIM", "4")
    monkeypatch.setenv("EMBEDDING_API_KEY_SECRET_ARN", arn)
    monkeypatch.delenv("EMBEDDING_API_KEY", raising=False)
    reset_memory_state()

    stored = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="Prepare the budget")
    assert stored.status == 200 and stored.body["indexed"] == "sweep"  # remote: left to the indexer (no queue here)
    from memory_indexer.app import handler
    from tests.conftest import load_event

    assert handler(load_event("scheduler_sweep.json"), lambda_context)["embedded"] == 1
    q = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="budget", limit=3)
    assert q.status == 200 and q.body["items"][0]["id"] == stored.body["id"]

    sent = [r for r in server.requests if r.path.endswith("/embeddings")]
    assert len(sent) == 2
    indexing, querying = sent
    assert {r.headers["authorization"] for r in sent} == {f"Bearer {key}"}
    # the indexer embeds under its system id, costed to the row's microDAO; a query under the caller's
    assert (indexing.headers["x-agent-id"], indexing.headers["x-microdao-id"]) == ("agent:memory-indexer", DAO)
    assert (querying.headers["x-agent-id"], querying.headers["x-microdao-id"]) == (AGENT, DAO)
    assert indexing.body["input"] == ["Prepare the budget"] and querying.body["input"] == ["budget"]
    with psycopg.connect(memory_db) as conn:
        assert conn.execute("SELECT embedding_model, embedding_mode FROM memories").fetchall() == [
            ("text-embedding-3-small", "plain")  # no E5 modes for this model
        ]


def test_an_unreadable_embedder_key_fails_closed_and_keyword_search_still_answers(
    aws, memory_api, memory_db, scripted_llm, monkeypatch
):
    server = scripted_llm("embedder")
    monkeypatch.setenv("EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("EMBEDDING_BASE_URL", server.base_url)
    monkeypatch.setenv("EMBEDDING_DIM", "4")
    monkeypatch.setenv(
        "EMBEDDING_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    )
    monkeypatch.setenv("MEMORY_INLINE_EMBEDDING", "always")
    reset_memory_state()
    stored = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="Prepare the budget")
    assert stored.status == 200 and stored.body["indexed"] == "sweep"  # stored; embedded once the key is readable
    q = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="budget", limit=3)
    assert q.status == 200 and q.body["degraded"] == ["vector"] and q.body["items"][0]["id"] == stored.body["id"]
    assert not server.requests  # no call without its key
