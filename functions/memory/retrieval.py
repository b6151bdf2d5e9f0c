"""Hybrid retrieval: pgvector HNSW (iterative index scans, so scope filters never starve the result)
and full text, fused by reciprocal rank, plus the channel's latest messages and a recency boost for
conversation memories. Every leg carries the same scope predicate: one microDAO, never another.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import psycopg

# Scope: the agent's own memories, its microDAO's knowledge base, the channel's context.
SCOPE_SQL = """m.microdao_id = %(dao)s
   AND (m.agent_id = %(agent)s OR m.tier = 'long' OR (m.channel_id IS NOT NULL AND m.channel_id = %(channel)s))
   AND (m.expires_at IS NULL OR m.expires_at > now())
   AND (%(kinds)s::text[] IS NULL OR m.kind = ANY(%(kinds)s::text[]))"""

# relaxed_order returns candidates slightly out of order: materialise, then order exactly.
VECTOR_SQL = f"""
WITH candidates AS MATERIALIZED (
    SELECT m.id, m.embedding <=> %(q)s AS distance
      FROM memories m
     WHERE {SCOPE_SQL} AND m.embedding IS NOT NULL
     ORDER BY m.embedding <=> %(q)s
     LIMIT %(k)s)
SELECT id::text AS id, distance FROM candidates ORDER BY distance"""  # noqa: S608 - constant SQL, values are parameters

TEXT_SQL = f"""
SELECT m.id::text AS id,
       (SELECT count(*) FROM unnest(%(terms)s::text[]) AS t(term) WHERE m.tsv @@ to_tsquery('simple', t.term))
           AS matched,
       ts_rank_cd(m.tsv, q.query) AS rank
  FROM memories m, to_tsquery('simple', %(tsquery)s) AS q(query)
 WHERE {SCOPE_SQL} AND m.tsv @@ q.query
 ORDER BY matched DESC, rank DESC, m.created_at DESC
 LIMIT %(k)s"""  # noqa: S608

CHANNEL_SQL = """
SELECT m.id::text AS id FROM memories m
 WHERE m.microdao_id = %(dao)s AND m.channel_id = %(channel)s
   AND (m.expires_at IS NULL OR m.expires_at > now())
   AND (%(kinds)s::text[] IS NULL OR m.kind = ANY(%(kinds)s::text[]))
 ORDER BY m.created_at DESC
 LIMIT %(n)s"""

ROWS_SQL = """
SELECT id::text AS id, kind, tier, agent_id, channel_id, text, content, meta, created_at,
       document_id IS NOT NULL AS is_chunk
  FROM memories WHERE id = ANY(%(ids)s::uuid[]) AND microdao_id = %(dao)s"""


@dataclass(frozen=True)
class MemoryRow:
    """One row of ROWS_SQL, read by column name (psycopg's ``class_row``)."""

    id: str
    kind: str
    tier: str
    agent_id: str | None
    channel_id: str | None
    text: str
    content: dict[str, Any] | None
    meta: dict[str, Any] | None
    created_at: datetime
    is_chunk: bool


def fetch_rows(conn: psycopg.Connection[Any], ids: list[str], microdao_id: str) -> list[MemoryRow]:
    """The rows behind candidate ids, the microDAO checked again (isolation does not rest on one query)."""
    from psycopg.rows import class_row

    if not ids:
        return []
    with conn.cursor(row_factory=class_row(MemoryRow)) as cur:
        return cur.execute(ROWS_SQL, {"ids": ids, "dao": microdao_id}).fetchall()


def _dicts(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


# A small k sharpens the rank curve: a keyword match moves an item a few places, not to the top
# from anywhere (with k=60 any second list decides the order of a small scope).
RRF_K = 5
# Relevance dominates; the channel's latest messages are always candidates, and recency (for
# conversations) breaks near-ties: together worth a few rank positions at the top of the vector leg.
WEIGHTS = {"vector": 1.0, "text": 0.5, "channel": 0.05}
RECENCY_WEIGHT = 0.05

# No stemmer or stop words in the 'simple' configuration: drop the commonest words ourselves.
STOP_WORDS = frozenset(
    " ".join(
        (
            "a an and are as at be but by can could did do does for from had has have how i if in is it its me my",
            "of on or our so that the their them then there these they this to us was we were what when where",
            "which who why will with would you your about any all also just not no yes",
            "а але в во ви від для до є же з за і із й як яка які який якій коли лише на над не ні о об від",
            "по при про та так також те ти то тут у уже чи що щоб це ця цей ці ми мені мене нам нас вам вас",
            "він вона воно вони його її їх був була було були буде",
        )
    ).split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def text_terms(query: str) -> list[str]:
    """The query's words as tsquery terms; longer words match by prefix (a crude stem for Ukrainian and English)."""
    terms: list[str] = []
    for word in _WORD.findall(query.casefold()):
        if word in STOP_WORDS or len(word) < 2:
            continue
        term = f"'{word[: max(4, len(word) - 2)]}':*" if len(word) >= 6 else f"'{word}'"
        if term not in terms:
            terms.append(term)
    return terms[:32]


def text_query(query: str) -> str | None:
    """An OR of the query's terms (ranked by how many of them a memory contains)."""
    return " | ".join(text_terms(query)) or None


@dataclass
class Scope:
    microdao_id: str
    agent_id: str
    channel_id: str | None = None
    kinds: list[str] | None = None

    def params(self) -> dict[str, Any]:
        return {"dao": self.microdao_id, "agent": self.agent_id, "channel": self.channel_id, "kinds": self.kinds}


@dataclass
class Hit:
    id: str
    score: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)
    distance: float | None = None


# An upper bound of the scope's size from three capped index-only scans (cheap; expiry and kinds ignored).
SCOPE_SIZE_SQL = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM memories WHERE microdao_id = %(dao)s AND agent_id = %(agent)s
                              LIMIT %(cap)s) AS a)
     + (SELECT count(*) FROM (SELECT 1 FROM memories WHERE microdao_id = %(dao)s AND tier = 'long'
                              LIMIT %(cap)s) AS l)
     + (SELECT count(*) FROM (SELECT 1 FROM memories WHERE microdao_id = %(dao)s AND channel_id = %(channel)s
                              LIMIT %(cap)s) AS c) AS size"""


def vector_candidates(
    conn: psycopg.Connection[Any],
    scope: Scope,
    query_vector: np.ndarray,
    k: int,
    *,
    ef_search: int = 100,
    max_scan_tuples: int = 20_000,
    exact_below: int = 5_000,
    iterative: bool = True,
) -> list[tuple[str, float]]:
    """(id, cosine distance) of the k nearest rows in scope.

    A small scope (fewer than ``exact_below`` rows, counted with a capped index scan) is searched
    exactly: b-tree scope filter, then sort. A large one goes through the HNSW index with iterative
    scans, which keep going past rows the scope filter rejects, so a scope holding a few percent of
    the table still gets k rows; the planner is kept off the b-tree-then-sort plan it might
    otherwise pick for a scope of 10% (exact, but hundreds of milliseconds at a million rows).
    """
    from pgvector import Vector

    params = {**scope.params(), "q": Vector(query_vector), "k": k}

    def exact() -> list[tuple[str, float]]:
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")  # the b-tree bitmap + sort: exact
            return [(r["id"], float(r["distance"])) for r in _dicts(conn, VECTOR_SQL, params)]

    if exact_below > 0:
        sized = _dicts(conn, SCOPE_SIZE_SQL, {**params, "cap": exact_below})
        if (sized[0]["size"] if sized else 0) < exact_below:
            return exact()
    with conn.transaction():
        conn.execute(f"SET LOCAL hnsw.iterative_scan = {'relaxed_order' if iterative else 'off'}")
        conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        conn.execute(f"SET LOCAL hnsw.max_scan_tuples = {int(max_scan_tuples)}")
        conn.execute("SET LOCAL enable_sort = off")
        rows = [(r["id"], float(r["distance"])) for r in _dicts(conn, VECTOR_SQL, params)]
    if len(rows) < k and exact_below > 0:  # the filter is narrower than the size bound said (kinds, expiry)
        return exact()
    return rows


def text_candidates(conn: psycopg.Connection[Any], scope: Scope, query: str, k: int) -> list[tuple[str, float]]:
    """(id, coverage): rows matching the query's words, with the share of the words each contains."""
    terms = text_terms(query)
    if not terms:
        return []
    params = {**scope.params(), "tsquery": " | ".join(terms), "terms": terms, "k": k}
    return [(r["id"], r["matched"] / len(terms)) for r in _dicts(conn, TEXT_SQL, params)]


def channel_latest(conn: psycopg.Connection[Any], scope: Scope, n: int) -> list[str]:
    if not scope.channel_id or n <= 0:
        return []
    return [r["id"] for r in _dicts(conn, CHANNEL_SQL, {**scope.params(), "n": n})]


def fuse(
    legs: dict[str, list[str]],
    distances: dict[str, float],
    created: dict[str, datetime],
    kinds: dict[str, str],
    half_life_hours: float,
    coverage: dict[str, float] | None = None,
    now: datetime | None = None,
) -> list[Hit]:
    """Weighted reciprocal-rank fusion (a keyword match counts by the share of the query's words it
    contains), plus a small recency boost for conversation memories."""
    now = now or datetime.now(UTC)
    coverage = coverage or {}
    hits: dict[str, Hit] = {}
    for leg, ids in legs.items():
        for rank, memory_id in enumerate(ids, start=1):
            hit = hits.setdefault(memory_id, Hit(memory_id))
            hit.ranks[leg] = rank
            weight = WEIGHTS[leg] * (coverage.get(memory_id, 0.0) ** 2 if leg == "text" else 1.0)
            hit.score += weight / (RRF_K + rank)
    for hit in hits.values():
        hit.distance = distances.get(hit.id)
        if kinds.get(hit.id) == "conversation" and hit.id in created:
            age_hours = max(0.0, (now - created[hit.id]).total_seconds() / 3600)
            hit.score += RECENCY_WEIGHT * math.pow(0.5, age_hours / half_life_hours) / RRF_K
    return sorted(hits.values(), key=lambda h: (-h.score, h.distance if h.distance is not None else 2.0))
