"""Knowledge-base documents: heading-aware chunking with overlap, ingestion that replaces a
document's chunks atomically, listing and deletion. Chunks are memories (tier ``long``, kind ``kb``)
scoped to the microDAO, so one retrieval query covers every tier.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from daarion_common.memory.text import content_hash

if TYPE_CHECKING:
    import psycopg

    from daarion_contracts.memory import DocumentInfo

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    headings: tuple[str, ...]
    body: str

    def text(self, title: str) -> str:
        """What is embedded and searched: the heading path gives a chunk its context."""
        headings = list(self.headings)
        if title and headings and headings[0].casefold() == title.casefold():
            headings = headings[1:]  # a document titled by its own first heading
        path = " > ".join([title, *headings]) if title else " > ".join(headings)
        return f"{path}\n\n{self.body}" if path else self.body


def _sections(text: str) -> list[tuple[tuple[str, ...], str]]:
    sections: list[tuple[tuple[str, ...], str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append((tuple(h for _, h in path), body))
        lines.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            path = [p for p in path if p[0] < level] + [(level, match.group(2).strip())]
        else:
            lines.append(line)
    flush()
    return sections


def _pieces(paragraph: str, max_chars: int) -> list[str]:
    """A paragraph longer than max_chars is cut at sentence ends, then at spaces."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    out: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            if current:
                out.append(current)
                current = ""
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > max_chars:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def _tail(text: str, overlap: int) -> str:
    if overlap <= 0 or len(text) <= overlap:
        return text if overlap > 0 else ""
    tail = text[-overlap:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < len(tail) // 2 else tail


def chunk_document(text: str, max_chars: int = 1200, overlap: int = 200) -> list[Chunk]:
    """Split markdown (or plain text) by headings, then pack paragraphs into chunks of at most
    ``max_chars`` characters; consecutive chunks of one section share ``overlap`` characters."""
    overlap = min(overlap, max_chars // 2)
    chunks: list[Chunk] = []
    for headings, body in _sections(text):
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
        pieces = [piece for p in paragraphs for piece in _pieces(p, max_chars - overlap - 2)]
        current = ""
        for piece in pieces:
            if current and len(current) + 2 + len(piece) > max_chars:
                chunks.append(Chunk(len(chunks), headings, current))
                carried = _tail(current, overlap)
                current = f"{carried}\n\n{piece}" if carried else piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
        if current:
            chunks.append(Chunk(len(chunks), headings, current))
    return chunks


@dataclass
class IngestResult:
    document_id: str
    internal_id: str
    chunk_ids: list[str] = field(default_factory=list)
    changed: bool = True
    created: bool = True


def document_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n\x00{text}".encode()).hexdigest()


def ingest(
    conn: psycopg.Connection[Any],
    *,
    microdao_id: str,
    document_key: str,
    title: str,
    text: str,
    source: str | None = None,
    created_by: str | None = None,
    meta: dict[str, Any] | None = None,
    s3: tuple[str, str, str] | None = None,
    max_chars: int = 1200,
    overlap: int = 200,
) -> IngestResult:
    """Create or replace a document and its chunks in one transaction. Unchanged content is a no-op."""
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb

    digest = document_hash(title, text)
    chunks = chunk_document(text, max_chars, overlap)
    bucket, key, etag = s3 or (None, None, None)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        existing = cur.execute(
            """SELECT id::text AS id, content_hash FROM kb_documents
                WHERE microdao_id = %s AND document_key = %s FOR UPDATE""",
            (microdao_id, document_key),
        ).fetchone()
        if existing and existing["content_hash"] == digest:
            cur.execute(
                "UPDATE kb_documents SET s3_bucket = %s, s3_key = %s, s3_etag = %s WHERE id = %s",
                (bucket, key, etag, existing["id"]),
            )
            return IngestResult(document_key, existing["id"], changed=False, created=False)
        row = cur.execute(
            """INSERT INTO kb_documents (microdao_id, document_key, title, source, content_hash, chunk_count,
                                         s3_bucket, s3_key, s3_etag, meta, created_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (microdao_id, document_key) DO UPDATE SET
                   title = EXCLUDED.title, source = EXCLUDED.source, content_hash = EXCLUDED.content_hash,
                   chunk_count = EXCLUDED.chunk_count, s3_bucket = EXCLUDED.s3_bucket, s3_key = EXCLUDED.s3_key,
                   s3_etag = EXCLUDED.s3_etag, meta = EXCLUDED.meta, updated_at = now()
               RETURNING id::text AS id""",
            (microdao_id, document_key, title, source, digest, len(chunks), bucket, key, etag, Jsonb(meta or {}),
             created_by),
        ).fetchone()  # fmt: skip
        assert row is not None
        internal_id = row["id"]
        cur.execute("DELETE FROM memories WHERE document_id = %s", (internal_id,))
        chunk_ids: list[str] = []
        if chunks:
            texts = [c.text(title) for c in chunks]
            metas = [
                Jsonb({"title": title, "source": source, "document_id": document_key, "headings": list(c.headings)})
                for c in chunks
            ]
            inserted = cur.execute(
                """INSERT INTO memories (tier, kind, microdao_id, agent_id, document_id, chunk_index, text,
                                         meta, content_hash)
                   SELECT 'long', 'kb', %s, %s, %s, i, t, m, h
                     FROM unnest(%s::int[], %s::text[], %s::jsonb[], %s::text[]) AS c(i, t, m, h)
                   RETURNING id::text AS id""",
                (microdao_id, created_by, internal_id, [c.index for c in chunks], texts, metas,
                 [content_hash(t) for t in texts]),
            ).fetchall()  # fmt: skip
            chunk_ids = [r["id"] for r in inserted]
    return IngestResult(document_key, internal_id, chunk_ids, changed=True, created=existing is None)


def list_documents(
    conn: psycopg.Connection[Any], microdao_id: str, limit: int = 100, offset: int = 0
) -> list[DocumentInfo]:
    from psycopg.rows import dict_row

    from daarion_contracts.memory import DocumentInfo

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT d.document_key AS document_id, d.title, d.source, d.chunk_count AS chunks,
                      d.created_at, d.updated_at, d.s3_key,
                      (SELECT count(*) FROM memories m WHERE m.document_id = d.id AND m.embedding IS NOT NULL)
                          AS chunks_indexed
                 FROM kb_documents d WHERE d.microdao_id = %s
                ORDER BY d.updated_at DESC, d.document_key LIMIT %s OFFSET %s""",
            (microdao_id, limit, offset),
        ).fetchall()
    return [
        DocumentInfo(**{**r, "created_at": r["created_at"].isoformat(), "updated_at": r["updated_at"].isoformat()})
        for r in rows
    ]


def delete_document(conn: psycopg.Connection[Any], microdao_id: str, document_key: str) -> int | None:
    """Delete a document and (by cascade) its chunks; the number of chunks removed, None if absent."""
    from psycopg.rows import dict_row

    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "DELETE FROM kb_documents WHERE microdao_id = %s AND document_key = %s RETURNING chunk_count",
            (microdao_id, document_key),
        ).fetchone()
    return None if row is None else int(row["chunk_count"])
