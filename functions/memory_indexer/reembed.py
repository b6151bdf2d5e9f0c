"""Re-embed every memory after a model change.

    python -m memory_indexer.reembed                 # rows whose embedding is missing or from another model
    python -m memory_indexer.reembed --all           # every row
    python -m memory_indexer.reembed --dimension 1536  # the new model has another dimension: migrate the column

Changing the dimension drops the HNSW index, retypes ``memories.embedding`` (old vectors cannot be
kept), re-embeds, then rebuilds the index. Runs with the functions' environment (DATABASE_URL or
DB_SECRET_ARN, EMBEDDING_*).
"""

from __future__ import annotations

import argparse
import sys
import time

from daarion_common import db
from daarion_common.memory import indexing
from daarion_common.memory.database import column_dimension
from daarion_common.memory.embeddings import get_embedder

HNSW_INDEX = (
    "CREATE INDEX IF NOT EXISTS memories_embedding_hnsw ON memories "
    "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
)


def change_dimension(conn: object, dimension: int) -> None:
    with conn.transaction():  # type: ignore[attr-defined]
        conn.execute("DROP INDEX IF EXISTS memories_embedding_hnsw")  # type: ignore[attr-defined]
        conn.execute(  # type: ignore[attr-defined]
            f"ALTER TABLE memories ALTER COLUMN embedding TYPE vector({int(dimension)}) USING NULL, "
            "ALTER COLUMN embedding_model TYPE text USING NULL"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="re-embed every row, not only stale ones")
    parser.add_argument("--dimension", type=int, help="retype memories.embedding to vector(N) first")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)

    embedder = get_embedder()
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
    began, total = time.monotonic(), 0
    if args.all:  # rewrite in place, page by page: search keeps working with the old vectors meanwhile
        from pgvector import Vector

        last = "00000000-0000-0000-0000-000000000000"
        while rows := conn.execute(
            "SELECT id::text, text FROM memories WHERE id > %s ORDER BY id LIMIT %s", (last, args.batch)
        ).fetchall():
            vectors = embedder.embed_passages([t for _, t in rows])
            conn.execute(
                """UPDATE memories AS m SET embedding = v.embedding, embedding_model = %s
                     FROM unnest(%s::uuid[], %s::vector[]) AS v(id, embedding) WHERE m.id = v.id""",
                (embedder.model, [i for i, _ in rows], [Vector(v) for v in vectors]),
            )
            total += len(rows)
            last = rows[-1][0]
            print(f"re-embedded {total} rows ({total / (time.monotonic() - began):.0f}/s)", flush=True)
    while True:
        written = indexing.embed_pending(conn, embedder, limit=args.batch)
        total += written
        if written:
            print(f"re-embedded {total} rows ({total / (time.monotonic() - began):.0f}/s)", flush=True)
        if written < args.batch:
            break
    conn.execute(HNSW_INDEX)
    print(f"done: {total} rows embedded with {embedder.model}")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
