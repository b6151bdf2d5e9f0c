"""Who sees what: the visibility rule of README "Who sees what", checked combination by combination —
owner x tier x kind x channel of the row, against agents querying in the same channel, another
channel, no channel, and from another microDAO — through the real handler and database.

The rule, as the README's table states it (``expected`` below is that table, not the SQL):
- the owning agent sees its own rows, every tier, kind and channel;
- every agent of the microDAO sees the knowledge base (kind ``kb``);
- every agent of the microDAO querying in a channel sees that channel's shared context: short-term
  conversation rows with that channel, and the channel's consolidated summaries (owned by no agent);
- nothing else: another agent's tasks, DAO events, mid-term notes and summaries stay private, in a
  shared channel too; nothing crosses microDAOs; nothing expired is seen.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

DAO, OTHER_DAO = "microdao:7", "microdao:8"
A, B, C = "agent:sofia", "agent:helion", "agent:nova"
GENERAL = "general"

# (kind, tier, what) of the rows each agent stores; "summary" is a summary the agent asked for.
SHAPES = [
    ("conversation", "short", "exchange"),
    ("conversation", "mid", "exchange"),
    ("conversation", "mid", "summary"),
    ("task", "short", "task"),
    ("task", "mid", "task"),
    ("dao-event", "mid", "event"),
    ("kb", "long", "kb note"),
]


@dataclass(frozen=True)
class Row:
    id: str
    owner: str | None  # None: the channel's consolidated summary
    dao: str
    kind: str
    tier: str
    channel: str | None
    label: str


def expected(row: Row, agent: str, dao: str, channel: str | None) -> bool:
    """README's table."""
    if row.dao != dao:
        return False
    if row.owner == agent:
        return True
    if row.kind == "kb":
        return True
    shared_context = row.kind == "conversation" and (row.tier == "short" or row.owner is None)
    return shared_context and row.channel is not None and row.channel == channel


@pytest.fixture
def rows(memory_api: Any, memory_db: str) -> list[Row]:
    out: list[Row] = []
    combos = itertools.product([(A, DAO), (B, DAO), (A, OTHER_DAO)], SHAPES, [GENERAL, None])
    for n, ((owner, dao), (kind, tier, what), channel) in enumerate(combos):
        label = f"{what} {n} of {owner} in {dao} {channel or 'nowhere'}: the treasury multisig moves on Friday"
        content: Any = {"summary": label} if what == "summary" else label
        meta = {"source": "summary"} if what == "summary" else None
        r = memory_api.store(
            agent_id=owner, microdao_id=dao, channel_id=channel, kind=kind, tier=tier, content=content, meta=meta
        )
        assert r.status == 200, r.body
        assert r.body["tier"] == tier
        out.append(Row(r.body["id"], owner, dao, kind, tier, channel, label))
    # the channel's consolidated summary (owned by no agent), as the indexer's consolidation stores it
    from memory_indexer.consolidation import store_channel_summary

    with psycopg.connect(memory_db, autocommit=True) as conn:
        for dao in (DAO, OTHER_DAO):
            summary_id = store_channel_summary(
                conn, microdao_id=dao, channel_id=GENERAL, row_ids=[],
                summary=f"Channel summary of {dao}: the treasury multisig moves on Friday.",
                meta={"source": "consolidation"},
            )  # fmt: skip
            assert summary_id is not None
            out.append(Row(summary_id, None, dao, "conversation", "mid", GENERAL, f"channel summary {dao}"))
    return out


# (agent, microDAO, channel it queries in): the owner, the other owner, a third agent, other microDAOs.
VIEWERS = [
    (A, DAO, GENERAL), (A, DAO, None), (A, DAO, "random"),
    (B, DAO, GENERAL), (B, DAO, None),
    (C, DAO, GENERAL), (C, DAO, None), (C, DAO, "random"),
    (C, OTHER_DAO, GENERAL), (A, "microdao:9", GENERAL),
]  # fmt: skip


def test_who_sees_each_row_by_owner_tier_kind_and_channel(memory_api, rows):
    """43 rows x 10 viewers: every (row, viewer) pair is checked against the table; one setup, all pairs."""
    wrong: list[str] = []
    checked = 0
    for agent, dao, channel in VIEWERS:
        body = {"agent_id": agent, "microdao_id": dao, "query": "when does the treasury multisig move", "limit": 50}
        if channel:
            body["channel_id"] = channel
        r = memory_api.query(**body)
        assert r.status == 200, r.body
        got = {item["id"] for item in r.body["items"]}
        assert len(got) == len(r.body["items"]) < 50  # every visible row fits: nothing was cut by the limit
        for row in rows:
            checked += 1
            if (row.id in got) != expected(row, agent, dao, channel):
                wrong.append(
                    f"{agent} in {dao}/{channel}: {'leaked' if row.id in got else 'missing'} {row.label} "
                    f"({row.kind}/{row.tier})"
                )
    assert checked == len(rows) * len(VIEWERS)
    assert not wrong, "\n".join(wrong)


def test_in_a_shared_channel_another_agents_task_summary_and_mid_term_note_stay_private(memory_api, rows):
    """The issue's case, spelled out: B queries in `general` where A stored a task, a summary and a
    mid-term note; B gets A's channel messages (short-term) and nothing else of A's — whatever kinds it asks for
    and whatever words it uses."""
    mine = {row.id: row for row in rows if row.owner == A and row.dao == DAO}
    for kinds in (None, ["task"], ["conversation"], ["conversation", "task", "dao-event", "kb"]):
        for question in ("treasury multisig Friday", "task of agent:sofia", "summary"):
            body = {"agent_id": B, "microdao_id": DAO, "channel_id": GENERAL, "query": question, "limit": 50}
            if kinds:
                body["kinds"] = kinds
            got = {item["id"] for item in memory_api.query(**body).body["items"]}
            seen = {(mine[i].kind, mine[i].tier, mine[i].channel) for i in got if i in mine}
            assert seen <= {("conversation", "short", GENERAL), ("kb", "long", GENERAL), ("kb", "long", None)}


def test_a_promotion_to_mid_term_takes_a_channel_message_out_of_the_shared_context(memory_api, memory_db):
    """Promoting is the owner keeping the memory as its own: the row becomes private (README)."""
    text = "I will draft the grant report myself"
    shared = memory_api.store(agent_id=A, microdao_id=DAO, channel_id=GENERAL, kind="conversation", content=text)
    seen_by_b = memory_api.query(agent_id=B, microdao_id=DAO, channel_id=GENERAL, query="grant report", limit=5)
    assert shared.body["id"] in {i["id"] for i in seen_by_b.body["items"]}
    kept = memory_api.store(
        agent_id=A, microdao_id=DAO, channel_id=GENERAL, kind="conversation", content=text, tier="mid"
    )
    assert kept.body["id"] == shared.body["id"] and kept.body["promoted"] is True
    seen_by_b = memory_api.query(agent_id=B, microdao_id=DAO, channel_id=GENERAL, query="grant report", limit=5)
    assert shared.body["id"] not in {i["id"] for i in seen_by_b.body["items"]}
    seen_by_a = memory_api.query(agent_id=A, microdao_id=DAO, query="grant report", limit=5)
    assert shared.body["id"] in {i["id"] for i in seen_by_a.body["items"]}


def test_summarize_reads_only_what_the_caller_may_see(memory_api, rows, monkeypatch):
    from daarion_common.memory.llm import ProxyReply
    from memory import service

    sent: list[str] = []

    def proxy(settings, model, messages, metadata, **_):  # type: ignore[no-untyped-def]
        sent.append(messages[-1]["content"])
        return ProxyReply("A short summary of the channel.", "openai")

    monkeypatch.setattr(service, "call_llm_proxy", proxy)
    for agent in (A, C):
        r = memory_api.call(
            "POST", "/internal/agent-memory/summarize", {"agent_id": agent, "microdao_id": DAO, "channel_id": GENERAL}
        )
        assert r.status == 200, r.body
        transcript = sent[-1]
        read = {row.id for row in rows if row.label in transcript}
        allowed = {
            row.id
            for row in rows
            if expected(row, agent, DAO, GENERAL)
            and row.channel == GENERAL
            and row.kind == "conversation"
            and row.owner is not None  # summaries are not summarised again
            and "summary" not in row.label.split(" ", 1)[0]
        }
        assert read == allowed, sorted(row.label for row in rows if row.id in read ^ allowed)
    # C's summary is C's own: B does not see it, C does
    summary_id = r.body["id"]
    by_b = memory_api.query(agent_id=B, microdao_id=DAO, channel_id=GENERAL, query="short summary", limit=50)
    by_c = memory_api.query(agent_id=C, microdao_id=DAO, query="short summary", limit=50)
    assert summary_id not in {i["id"] for i in by_b.body["items"]}
    assert summary_id in {i["id"] for i in by_c.body["items"]}


def test_expired_rows_are_seen_by_nobody_even_before_the_sweep(memory_api, memory_db):
    r = memory_api.store(agent_id=A, microdao_id=DAO, channel_id=GENERAL, kind="conversation", content="old news")
    with psycopg.connect(memory_db, autocommit=True) as conn:
        conn.execute("UPDATE memories SET expires_at = now() - interval '1 minute' WHERE id = %s", (r.body["id"],))
    for agent in (A, B):
        q = memory_api.query(agent_id=agent, microdao_id=DAO, channel_id=GENERAL, query="old news", limit=10)
        assert r.body["id"] not in {i["id"] for i in q.body["items"]}
