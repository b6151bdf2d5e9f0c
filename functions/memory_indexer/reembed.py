"""Re-embed memories after a change of model or of embedding modes.

    python -m memory_indexer.reembed                   # rows missing an embedding, or embedded by another
                                                       # model or in another mode than their kind's
    python -m memory_indexer.reembed --all             # every row
    python -m memory_indexer.reembed --dimension 1536  # the new model has another dimension: migrate the column
    python -m memory_indexer.reembed --limit 1000      # at most this many rows now (the rest: run again)

Without ``--dimension`` the vectors are replaced in place, page by page, each page one short UPDATE:
search keeps answering throughout, a row with its old vector until its page is written (an E5 query-mode
and passage-mode vector of the same text are close, so a half-migrated table still ranks sensibly).
Changing the dimension drops the HNSW index, retypes ``memories.embedding`` (old vectors cannot be
kept), re-embeds, then rebuilds the index. Runs with the functions' environment (DATABASE_URL or
DB_SECRET_ARN, EMBEDDING_*, EMBEDDING_QUERY_MODE_KINDS).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from daarion_common import db
from daarion_common.memory import indexing
from daarion_common.memory.config import MemorySettings
from daarion_common.memory.database import column_dimension
from daarion_common.memory.embeddings import build_embedder, query_mode_kinds

HNSW_INDEX = (
    "CREATE INDEX IF NOT EXISTS memories_embedding_hnsw ON memories "
    "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
)


def change_dimension(conn: Any, dimension: int) -> None:
    with conn.transaction():
        conn.execute("DROP INDEX IF EXISTS memories_embedding_hnsw")
        conn.execute(
            f"ALTER TABLE memories ALTER COLUMN embedding TYPE vector({int(dimension)}) USING NULL, "
            "ALTER COLUMN embedding_model TYPE text USING NULL, ALTER COLUMN embedding_mode TYPE text USING NULL"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--all", action="store_true", help="re-embed every row, not only stale ones")
    parser.add_argument("--dimension", type=int, help="retype memories.embedding to vector(N) first")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--limit", type=int, help="stop after about this many rows (run again for the rest)")
    args = parser.parse_args(argv)

    settings = MemorySettings()
    embedder = build_embedder(settings)
    modes = indexing.Modes(embedder, query_mode_kinds(settings.embedding_query_mode_kinds))
    conn = db.connect()
    current = column_dimension(conn)
    if args.dimension is not None and args.dimension != current:
        if args.dimension != embedder.dim:
            print(f"--dimension {args.dimension} does not match the embedder ({embedder.dim}-d)", file=sys.stderr)
            return 2
        change_dimension(conn, args.dimension)
        print(f"memories.embedding: vector({current}) -> vector({args.dimension}); index dropped")
    elif current != embedder.dim:
        print(
            f"memories.embedding is vector({current}) but {embedder.model} makes {embedder.dim}-d vectors: "
            f"run with --dimension {embedder.dim}",
            file=sys.stderr,
        )
        return 2
    from pgvector import Vector

    began, total = time.monotonic(), 0

    def room() -> int:
        return args.batch if args.limit is None else max(0, min(args.batch, args.limit - total))

    if args.all:  # rewrite in place, page by page: search keeps working with the old vectors meanwhile
        last = "00000000-0000-0000-0000-000000000000"
        while (size := room()) and (
            rows := conn.execute(
                "SELECT id::text, text, content, kind, microdao_id FROM memories WHERE id > %s ORDER BY id LIMIT %s",
                (last, size),
            ).fetchall()
        ):
            pending = [indexing.Pending(i, t, c, k, d) for i, t, c, k, d in rows]
            ids, vectors, row_modes = indexing.embed_rows(pending, modes)
            conn.execute(
                """UPDATE memories AS m SET embedding = v.embedding, embedding_model = %s, embedding_mode = v.mode
                     FROM unnest(%s::uuid[], %s::vector[], %s::text[]) AS v(id, embedding, mode) WHERE m.id = v.id""",
                (embedder.model, ids, [Vector(v) for v in vectors], row_modes),
            )
            total += len(rows)
            last = rows[-1][0]
            print(f"re-embedded {total} rows ({total / (time.monotonic() - began):.0f}/s)", flush=True)
    while size := room():  # stale rows: missing, another model, another mode than their kind's
        written = indexing.embed_pending(conn, modes, limit=size)
        total += written
        if written:
            print(f"re-embedded {total} rows ({total / (time.monotonic() - began):.0f}/s)", flush=True)
        if written < size:
            break
    conn.execute(HNSW_INDEX)
    print(f"done: {total} rows embedded with {embedder.model}")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
