"""Consolidation: what was said in a channel outlives its raw messages.

On the indexer's schedule, each channel's shared short-term conversation rows (the channel's context,
visible to every agent of the microDAO querying in that channel) that expire within
``MEMORY_CONSOLIDATION_LEAD_HOURS`` are summarised through the LLM Proxy into one mid-term **channel
summary**: kind ``conversation``, tier ``mid``, owned by no agent, with the channel — so the visibility
rule gives it exactly the audience of the rows it replaces (README, "Who sees what"). Agents' private
rows are never read.

- The proxy is called under a system agent id of its own (``MEMORY_CONSOLIDATION_AGENT_ID``,
  ``agent:memory-consolidator``: its own per-agent limits at the proxy), with the rows' microDAO and
  channel, so the cost is the microDAO's.
- Idempotent: the summarised rows are marked (``consolidated_at``) in the transaction that stores the
  summary, and only if none was marked meanwhile; a run repeated, or two runs at once, store it once.
- Bounded per run: ``MEMORY_CONSOLIDATION_MAX_CHANNELS`` channels, ``MEMORY_CONSOLIDATION_MAX_MESSAGES``
  messages (and ``MAX_TRANSCRIPT_CHARS``) per channel, and no new call without the proxy's timeout left.
- When only the LLM Proxy's offline provider answers (``provider: "offline"``, no model configured), the
  placeholder is never stored: the run stops with a log line and the rows stay unmarked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from daarion_common.errors import ApiError
from daarion_common.memory.llm import call_llm_proxy, transcript_of
from daarion_common.memory.text import content_hash, render
from daarion_common.observability import logger

if TYPE_CHECKING:
    import psycopg

    from daarion_common.memory.config import MemorySettings
    from daarion_common.memory.database import Database

CONSOLIDATION_PROMPT = (
    "You keep the shared memory of a team channel. Below are the channel's messages that are about to be "
    "deleted. Write a short, factual summary that lets the team's agents recall them later: decisions, facts, "
    "dates, open tasks with owners. Name people as the messages do. Write in the language the messages mostly "
    "use. No preamble."
)
SUMMARY_SOURCES = ["summary", "consolidation"]

# Shared short-term rows not yet consolidated that expire within the lead time (expired ones not yet
# swept included: the sweep consolidates before it deletes).
_DUE = """audience = 'channel' AND tier = 'short' AND consolidated_at IS NULL
      AND expires_at <= now() + make_interval(secs => %(lead_s)s)
      AND NOT (coalesce(meta->>'source', '') = ANY(%(summaries)s::text[]))"""

CHANNELS_SQL = f"""
SELECT microdao_id, channel_id, min(expires_at) AS first_expiry FROM memories
 WHERE {_DUE}
 GROUP BY microdao_id, channel_id ORDER BY first_expiry LIMIT %(channels)s"""  # noqa: S608

ROWS_SQL = f"""
SELECT id::text AS id, text, created_at FROM memories
 WHERE {_DUE} AND microdao_id = %(dao)s AND channel_id = %(channel)s
 ORDER BY expires_at, created_at LIMIT %(n)s"""  # noqa: S608


@dataclass
class Consolidated:
    channels: int = 0
    summaries: int = 0
    messages: int = 0
    failed: int = 0
    skipped: str | None = None  # why the run stopped early: "offline", "unconfigured", "time"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class _AlreadyConsolidated(Exception):
    """Another run marked some of these rows first: this run's summary is dropped."""


def _dicts(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return "\x00" not in text and 0 < len(text) <= 32_000


def store_channel_summary(
    conn: psycopg.Connection[Any],
    *,
    microdao_id: str,
    channel_id: str,
    summary: str,
    row_ids: list[str],
    meta: dict[str, Any],
) -> str | None:
    """Store the channel's summary and mark its rows, in one transaction; None if already done."""
    from psycopg.types.json import Jsonb

    content = {"summary": summary}
    text = render(content)
    try:
        with conn.transaction():
            marked = conn.execute(
                """UPDATE memories SET consolidated_at = now()
                    WHERE id = ANY(%s::uuid[]) AND consolidated_at IS NULL""",
                (row_ids,),
            ).rowcount
            if marked != len(row_ids):
                raise _AlreadyConsolidated
            row = _dicts(
                conn,
                """INSERT INTO memories (tier, kind, microdao_id, agent_id, channel_id, text, content, meta,
                                         content_hash)
                   VALUES ('mid', 'conversation', %(dao)s, NULL, %(channel)s, %(text)s, %(content)s, %(meta)s,
                           %(hash)s)
                   ON CONFLICT (microdao_id, agent_id, channel_id, kind, content_hash) WHERE document_id IS NULL
                   DO UPDATE SET meta = memories.meta
                   RETURNING id::text AS id""",
                {"dao": microdao_id, "channel": channel_id, "text": text, "content": Jsonb(content),
                 "meta": Jsonb(meta), "hash": content_hash(text)},
            )  # fmt: skip
    except _AlreadyConsolidated:
        return None
    return row[0]["id"] if row else None


def consolidate(
    database: Database, settings: MemorySettings, time_left_s: Callable[[], float] | None = None
) -> Consolidated:
    """One run: the channels whose shared rows expire soonest first, as far as the bounds allow."""
    result = Consolidated()
    if not settings.memory_consolidation_enabled or settings.memory_consolidation_max_channels == 0:
        return result
    if not settings.llm_proxy_url:
        logger.info("consolidation skipped: LLM_PROXY_URL is not set")
        result.skipped = "unconfigured"
        return result
    params = {"lead_s": settings.memory_consolidation_lead_hours * 3600, "summaries": SUMMARY_SOURCES,
              "channels": settings.memory_consolidation_max_channels}  # fmt: skip
    due = database.run(lambda conn: _dicts(conn, CHANNELS_SQL, params))
    for channel in due:
        if time_left_s is not None and time_left_s() < settings.llm_proxy_timeout_seconds + 10:
            result.skipped = "time"
            break
        dao, channel_id = channel["microdao_id"], channel["channel_id"]
        rows = database.run(
            lambda conn, dao=dao, channel_id=channel_id: _dicts(
                conn, ROWS_SQL,
                {**params, "dao": dao, "channel": channel_id, "n": settings.memory_consolidation_max_messages},
            )
        )  # fmt: skip
        if not rows:
            continue
        transcript, used = transcript_of(rows)  # the soonest to expire first, as far as they fit
        try:
            reply = call_llm_proxy(
                settings,
                model=settings.memory_summary_model,
                messages=[{"role": "system", "content": CONSOLIDATION_PROMPT},
                          {"role": "user", "content": transcript}],
                metadata={"agent_id": settings.memory_consolidation_agent_id, "microdao_id": dao,
                          "channel_id": channel_id},
                max_tokens=800,
            )  # fmt: skip
        except ApiError as exc:  # this channel is tried again on the next run, until its rows expire
            logger.warning("consolidation failed for a channel",
                           extra={"microdao_id": dao, "channel_id": channel_id, "code": exc.code})  # fmt: skip
            result.failed += 1
            continue
        if reply.offline:
            logger.info(
                "consolidation skipped: only the LLM Proxy's offline provider answers (no model configured); "
                "nothing stored", extra={"model": settings.memory_summary_model},
            )  # fmt: skip
            result.skipped = "offline"
            break
        if not _storable(reply.content):
            logger.warning("consolidation summary not storable (NUL, lone surrogate or size)",
                           extra={"microdao_id": dao, "channel_id": channel_id})  # fmt: skip
            result.failed += 1
            continue
        meta = {
            "source": "consolidation", "messages": len(used),
            "from": used[0]["created_at"].isoformat(), "to": used[-1]["created_at"].isoformat(),
            "consolidated_by": settings.memory_consolidation_agent_id, "provider": reply.provider,
        }  # fmt: skip
        row_ids = [r["id"] for r in used]
        stored = database.run(
            lambda conn, dao=dao, channel=channel_id, ids=row_ids, meta=meta, text=reply.content: store_channel_summary(
                conn, microdao_id=dao, channel_id=channel, summary=text, row_ids=ids, meta=meta
            )
        )
        result.channels += 1
        if stored is not None:
            result.summaries += 1
            result.messages += len(used)
    return result
