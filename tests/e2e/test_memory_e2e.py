"""The Memory Orchestrator over HTTP on the local stack: API Gateway emulation -> the memory Lambda
-> embedded PostgreSQL; knowledge-base chunks through the real IndexQueue to the indexer Lambda."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.stack import wait_for

pytestmark = pytest.mark.slow
HEADERS = {"X-Internal-Secret": "dev-secret-token"}


def test_store_query_and_kb_indexing_through_the_local_stack(local_stack):
    base = f"{local_stack.memory}/internal/agent-memory"
    stored = httpx.post(
        f"{base}/store",
        headers=HEADERS,
        json={"agent_id": "sofia", "microdao_id": "dao-e2e", "channel_id": "general", "kind": "conversation",
              "content": {"user_message": "Our treasury multisig needs 4 of 7 signatures.", "agent_reply": "Noted."}},
        timeout=60,
    )  # fmt: skip
    assert stored.status_code == 200, stored.text
    empty = httpx.post(f"{base}/store", headers=HEADERS, json={}, timeout=60)
    assert empty.status_code == 422 and "microdao_id" in [f["field"] for f in empty.json()["error"]["fields"]]
    found = httpx.post(
        f"{base}/query",
        headers=HEADERS,
        json={"agent_id": "sofia", "microdao_id": "dao-e2e", "query": "скільки підписів потрібно", "limit": 3},
        timeout=60,
    ).json()
    assert found["results"][0]["id"] == stored.json()["id"]

    doc = httpx.post(
        f"{base}/kb/documents",
        headers=HEADERS,
        json={"microdao_id": "dao-e2e", "title": "Guide", "markdown": "# Votes\n\nQuorum is 20% of staked tokens."},
        timeout=60,
    ).json()
    assert doc["indexing"] == "queued"

    def indexed() -> bool:
        listed = httpx.get(f"{base}/kb/documents", headers=HEADERS, params={"microdao_id": "dao-e2e"}, timeout=10)
        return listed.json()["documents"][0]["chunks_indexed"] == 1

    wait_for(indexed, 90, "the indexer Lambda to embed the document's chunk from the IndexQueue")
    gateway = httpx.post(
        f"{local_stack.gateway}/internal/agent-memory/query",
        headers=HEADERS,
        json={"agent_id": "other-agent", "microdao_id": "dao-e2e", "query": "what quorum do votes need", "limit": 1},
        timeout=60,
    ).json()
    assert gateway["items"][0]["kind"] == "kb" and "20%" in gateway["items"][0]["content"]
