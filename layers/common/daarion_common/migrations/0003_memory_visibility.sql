-- Memory visibility, embedding modes and consolidation (issue 13).
--
-- audience: who may read a row, derived from what the row is, by one rule (README, "Who sees what"):
--   'microdao' - the knowledge base (kind kb): every agent of the microDAO;
--   'channel'  - a channel's shared context: short-term conversation rows with a channel, and the
--                channel's consolidated summaries (mid-term conversation rows owned by no agent);
--                every agent of the microDAO that queries in that channel;
--   'agent'    - everything else (tasks, DAO events, notes, mid-term memories, summaries an agent asked
--                for): the owning agent only.
-- The owning agent always sees its own rows. Generated, so no write path can store a row whose
-- audience disagrees with the rule, and a promotion (short -> mid) changes it in the same statement.
ALTER TABLE memories ADD COLUMN audience text GENERATED ALWAYS AS (
    CASE
        WHEN kind = 'kb' THEN 'microdao'
        WHEN kind = 'conversation' AND channel_id IS NOT NULL AND (tier = 'short' OR agent_id IS NULL) THEN 'channel'
        ELSE 'agent'
    END) STORED;

-- How the vector was made: E5's 'query' (symmetric) or 'passage' mode, or 'plain' for models without
-- modes. NULL on rows embedded before this migration: passage (the only mode then). The indexer and
-- `python -m memory_indexer.reembed` rewrite rows whose mode is not the one configured for their kind.
ALTER TABLE memories ADD COLUMN embedding_mode text
    CHECK (embedding_mode IS NULL OR embedding_mode IN ('query', 'passage', 'plain'));

-- Consolidation: when a shared short-term row was summarised into its channel's mid-term summary.
ALTER TABLE memories ADD COLUMN consolidated_at timestamptz;

DROP INDEX IF EXISTS memories_scope_tier;
CREATE INDEX memories_scope_audience ON memories (microdao_id, audience);
-- The consolidation pass: shared short-term rows not yet summarised, by expiry.
CREATE INDEX memories_to_consolidate ON memories (expires_at)
    WHERE audience = 'channel' AND tier = 'short' AND consolidated_at IS NULL;
