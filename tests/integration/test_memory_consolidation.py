"""Consolidation: the indexer's schedule summarises each channel's shared conversations about to expire
into a mid-term channel summary through the real LLM Proxy (its Lambda handler behind loopback HTTP,
API Gateway v2 events) whose upstream is a scripted OpenAI-compatible server; the real database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import load_event
from tests.fixtures.llm_proxy import Reply
from tests.fixtures.memory import reset_memory_state

DAO, OTHER_DAO = "microdao:7", "microdao:8"
A, B, C = "agent:sofia", "agent:helion", "agent:nova"


def sweep(lambda_context: Any) -> dict[str, Any]:
    from memory_indexer.app import handler

    return handler(load_event("scheduler_sweep.json"), lambda_context)


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params or None).fetchall()


def say(api: Any, agent: str, text: str, channel: str = "general", dao: str = DAO, **kw: Any) -> str:
    body = {"agent_id": agent, "microdao_id": dao, "channel_id": channel, "kind": "conversation",
            "content": {"user_message": text, "agent_reply": "OK"}}  # fmt: skip
    body.update(kw)
    r = api.store(**body)
    assert r.status == 200, r.body
    return r.body["id"]


@pytest.fixture
def proxied(memory_db, upstreams, llm_bridge, monkeypatch):
    """LLM_PROXY_URL -> the real LLM Proxy, whose `gpt-4.1-mini` is answered by a scripted upstream."""
    monkeypatch.setenv("LLM_PROXY_URL", llm_bridge.url)
    reset_memory_state()

    def summary(body: dict[str, Any]) -> Reply:
        transcript = body["messages"][-1]["content"]
        return Reply.text(f"Channel summary of {transcript.count('User:')} messages: the demo moves to Friday.")

    upstreams.openai.default = summary
    return upstreams.openai


def test_a_channel_outlives_its_raw_messages_and_the_summary_is_stored_once(
    memory_api, memory_db, proxied, lambda_context, caplog
):
    soon = {"ttl_seconds": 600}  # expires within MEMORY_CONSOLIDATION_LEAD_HOURS (24)
    shared = [
        say(memory_api, A, "Let's move the demo to Friday", **soon),
        say(memory_api, B, "Friday works, I will book the room", **soon),
        say(memory_api, A, "Invite the Lviv team too", **soon),
    ]
    private = memory_api.store(agent_id=A, microdao_id=DAO, channel_id="general", kind="task",
                               content="Sofia's private task: prepare the demo script", ttl_seconds=600)  # fmt: skip
    later = say(memory_api, B, "Next quarter we revisit the roadmap")  # 168 h left: not due yet
    random_channel = say(memory_api, C, "Random chatter about coffee", channel="random", **soon)
    elsewhere = say(memory_api, A, "Another microDAO's demo", dao=OTHER_DAO, **soon)

    results = [sweep(lambda_context) for _ in range(3)]  # the schedule runs again and again

    assert results[0]["consolidated"] == {"channels": 3, "summaries": 3, "messages": 5, "failed": 0}
    assert results[1]["consolidated"] == results[2]["consolidated"] == {
        "channels": 0, "summaries": 0, "messages": 0, "failed": 0,
    }  # fmt: skip
    calls = proxied.chat_requests()
    assert len(calls) == 3  # one model call per channel, however often the schedule runs
    general = next(
        c.body["messages"][-1]["content"] for c in calls if "demo to Friday" in c.body["messages"][-1]["content"]
    )
    assert "book the room" in general and "Lviv team" in general
    assert "private task" not in general and "roadmap" not in general and "coffee" not in general
    summaries = rows(
        memory_db,
        "SELECT microdao_id, channel_id, agent_id, tier, kind, meta->>'source', (meta->>'messages')::int, "
        "meta->>'consolidated_by', text FROM memories WHERE meta->>'source' = 'consolidation' "
        "ORDER BY microdao_id, channel_id",
    )
    assert [s[:8] for s in summaries] == [
        (DAO, "general", None, "mid", "conversation", "consolidation", 3, "agent:memory-consolidator"),
        (DAO, "random", None, "mid", "conversation", "consolidation", 1, "agent:memory-consolidator"),
        (OTHER_DAO, "general", None, "mid", "conversation", "consolidation", 1, "agent:memory-consolidator"),
    ]
    assert summaries[0][8] == "Summary: Channel summary of 3 messages: the demo moves to Friday."
    marked = {r[0] for r in rows(memory_db, "SELECT id::text FROM memories WHERE consolidated_at IS NOT NULL")}
    assert marked == {*shared, random_channel, elsewhere}
    assert private.body["id"] not in marked and later not in marked

    # called under its own system agent id, costed to each channel's microDAO (the proxy's usage events)
    usage = [r.usage_event for r in caplog.records if hasattr(r, "usage_event")]
    chat = [(u["agent_id"], u["microdao_id"], u["channel_id"]) for u in usage if u.get("type") == "llm_call"]
    assert sorted(chat) == [
        ("agent:memory-consolidator", DAO, "general"),
        ("agent:memory-consolidator", DAO, "random"),
        ("agent:memory-consolidator", OTHER_DAO, "general"),
    ]

    # the raw messages expire and are swept; the summary stays, visible to whoever could see them
    with psycopg.connect(memory_db, autocommit=True) as conn:
        conn.execute("UPDATE memories SET expires_at = now() - interval '1 second' WHERE consolidated_at IS NOT NULL")
        conn.execute(
            "UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = %s", (private.body["id"],)
        )
    assert sweep(lambda_context)["expired"] == 6
    for agent in (A, B, C):  # any agent of the microDAO, querying in the channel
        q = memory_api.query(agent_id=agent, microdao_id=DAO, channel_id="general", query="when is the demo?", limit=3)
        assert q.body["items"][0]["content"].startswith("Summary: Channel summary of 3 messages"), q.body
        assert q.body["items"][0]["tier"] == "mid" and q.body["items"][0]["meta"]["source"] == "consolidation"
    outside = memory_api.query(agent_id=C, microdao_id=DAO, query="when is the demo?", limit=10)  # no channel
    assert all(
        i["meta"]["source"] != "consolidation" or i["meta"]["channel_id"] != "general" for i in outside.body["items"]
    )
    other = memory_api.query(agent_id=C, microdao_id=OTHER_DAO, channel_id="random", query="demo", limit=10)
    assert all(i["meta"]["channel_id"] != "general" for i in other.body["items"])
    # the summary got its vector from the sweep (query mode: a conversation)
    assert rows(memory_db, "SELECT embedding_mode FROM memories WHERE meta->>'source' = 'consolidation'") == [
        ("query",), ("query",), ("query",),
    ]  # fmt: skip


def test_consolidation_is_bounded_per_run(memory_api, memory_db, proxied, lambda_context, monkeypatch):
    monkeypatch.setenv("MEMORY_CONSOLIDATION_MAX_CHANNELS", "2")
    monkeypatch.setenv("MEMORY_CONSOLIDATION_MAX_MESSAGES", "3")
    reset_memory_state()
    for channel in ("c1", "c2", "c3"):
        for n in range(4):
            say(memory_api, A, f"message {n} in {channel}", channel=channel, ttl_seconds=600 + n)
    first = sweep(lambda_context)["consolidated"]
    assert (first["channels"], first["summaries"], first["messages"]) == (2, 2, 6)
    second = sweep(lambda_context)["consolidated"]
    assert (second["channels"], second["summaries"], second["messages"]) == (2, 2, 4)  # c3's 3, then c1 or c2's last
    third = sweep(lambda_context)["consolidated"]
    assert (third["summaries"], third["messages"]) == (2, 2)
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE consolidated_at IS NULL AND kind = 'conversation' "
                           "AND agent_id IS NOT NULL")[0][0] == 0  # fmt: skip
    assert len(proxied.chat_requests()) == 6


def test_only_the_offline_provider_answering_stores_nothing_and_says_so(
    memory_api, memory_db, llm_bridge, lambda_context, monkeypatch, caplog
):
    monkeypatch.setenv("LLM_PROXY_URL", llm_bridge.url)  # no provider keys: the proxy's offline placeholder
    reset_memory_state()
    ids = [say(memory_api, A, f"message {n}", ttl_seconds=600) for n in range(2)]
    for _ in range(2):
        result = sweep(lambda_context)
        assert result["consolidated"]["skipped"] == "offline" and result["consolidated"]["summaries"] == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("consolidation skipped")]
    assert said == ["consolidation skipped: only the LLM Proxy's offline provider answers (no model configured); "
                    "nothing stored"] * 2  # fmt: skip
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE meta->>'source' = 'consolidation'")[0][0] == 0
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE text LIKE '%offline provider%'")[0][0] == 0
    unmarked = rows(
        memory_db, "SELECT count(*) FROM memories WHERE consolidated_at IS NULL AND id = ANY(%s::uuid[])", ids
    )
    assert unmarked[0][0] == 2  # left for a run that has a model


def test_two_runs_racing_store_one_summary(memory_api, memory_db):
    from memory_indexer.consolidation import store_channel_summary

    ids = [say(memory_api, A, f"message {n}", ttl_seconds=600) for n in range(2)]
    with psycopg.connect(memory_db, autocommit=True) as conn:
        kept = store_channel_summary(conn, microdao_id=DAO, channel_id="general", summary="first run's summary",
                                     row_ids=ids, meta={"source": "consolidation"})  # fmt: skip
        late = store_channel_summary(conn, microdao_id=DAO, channel_id="general", summary="second run's summary",
                                     row_ids=ids, meta={"source": "consolidation"})  # fmt: skip
    assert kept is not None and late is None
    assert rows(memory_db, "SELECT text FROM memories WHERE meta->>'source' = 'consolidation'") == [
        ("Summary: first run's summary",)
    ]
