"""Knowledge-base documents from an S3 prefix.

Layout: ``s3://{KB_BUCKET}/{KB_PREFIX}{microdao_id}/{path}`` (``.md``, ``.markdown`` or ``.txt``).
The document id is ``path``; the title is the first markdown heading or the file name. New or
changed objects (by ETag) are (re-)ingested; documents whose object is gone are deleted.
"""

from __future__ import annotations

import re
from typing import Any

from daarion_common.memory import kb
from daarion_common.memory.config import get_memory_settings
from daarion_common.memory.database import unavailable_as_503
from daarion_common.observability import logger
from daarion_contracts.memory import MAX_DOCUMENT_CHARS, MAX_DOCUMENT_CHUNKS

SUFFIXES = (".md", ".markdown", ".txt")
MAX_OBJECT_BYTES = 2_000_000
_FIRST_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _title(path: str, text: str) -> str:
    match = _FIRST_HEADING.search(text)
    return match.group(1).strip() if match else path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def sync_bucket(conn: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    from daarion_common.aws import client

    s3 = client("s3")
    settings = get_memory_settings()
    seen: set[tuple[str, str]] = set()
    counts = {"ingested": 0, "unchanged": 0, "deleted": 0, "skipped": 0, "failed": 0}
    from psycopg.rows import dict_row

    with unavailable_as_503(conn), conn.cursor(row_factory=dict_row) as cur:
        known = {
            (r["microdao_id"], r["document_key"]): r["s3_etag"]
            for r in cur.execute(
                "SELECT microdao_id, document_key, s3_etag FROM kb_documents WHERE s3_bucket = %s AND s3_key LIKE %s",
                (bucket, prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
            ).fetchall()
        }
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key, etag = obj["Key"], obj["ETag"].strip('"')
            relative = key[len(prefix) :]
            microdao_id, _, path = relative.partition("/")
            if not microdao_id or not path or not key.lower().endswith(SUFFIXES) or obj["Size"] > MAX_OBJECT_BYTES:
                counts["skipped"] += 1
                continue
            seen.add((microdao_id, path))
            if known.get((microdao_id, path)) == etag:
                counts["unchanged"] += 1
                continue
            try:
                text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
                if (
                    len(text) > MAX_DOCUMENT_CHARS
                    or "\x00" in text
                    or (
                        len(kb.chunk_document(text, settings.kb_chunk_chars, settings.kb_chunk_overlap))
                        > MAX_DOCUMENT_CHUNKS
                    )
                ):  # the same bounds as the HTTP route (the indexer embeds it over several runs)
                    logger.warning("kb object too large; skipped", extra={"key": key, "chars": len(text)})
                    counts["skipped"] += 1
                    continue
                with unavailable_as_503(conn):
                    kb.ingest(
                        conn, microdao_id=microdao_id, document_key=path, title=_title(path, text), text=text,
                        source=f"s3://{bucket}/{key}", s3=(bucket, key, etag),
                        max_chars=settings.kb_chunk_chars, overlap=settings.kb_chunk_overlap,
                    )  # fmt: skip
                counts["ingested"] += 1
            except UnicodeDecodeError:
                counts["skipped"] += 1
            except Exception as exc:  # one bad object must not stop the sync of the others
                logger.warning("kb object not synced", extra={"key": key, "error": repr(exc)[:300]})
                counts["failed"] += 1
    for microdao_id, path in set(known) - seen:
        with unavailable_as_503(conn):
            if kb.delete_document(conn, microdao_id, path) is not None:
                counts["deleted"] += 1
    return counts
