-- Memory Orchestrator: memories (short / mid / long tier), knowledge-base documents and their chunks.
--
-- The embedding dimension comes from configuration (EMBEDDING_DIM): the migration runner sets the
-- transaction-local setting daarion.embedding_dim before applying files. Changing it later is done
-- by `python -m memory_indexer.reembed --dimension D`, not by editing this file.

CREATE TABLE kb_documents (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    microdao_id   text NOT NULL,
    document_key  text NOT NULL,              -- the caller's document id (or the S3 key)
    title         text NOT NULL,
    source        text,
    content_hash  text NOT NULL,
    chunk_count   integer NOT NULL DEFAULT 0,
    s3_bucket     text,
    s3_key        text,
    s3_etag       text,
    meta          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (microdao_id, document_key)
);
CREATE INDEX kb_documents_s3 ON kb_documents (s3_bucket, s3_key) WHERE s3_key IS NOT NULL;

DO $migration$
DECLARE
    dim integer := coalesce(nullif(current_setting('daarion.embedding_dim', true), ''), '384')::integer;
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE memories (
            id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            tier            text NOT NULL CHECK (tier IN ('short', 'mid', 'long')),
            kind            text NOT NULL CHECK (kind IN ('conversation', 'kb', 'task', 'dao-event')),
            microdao_id     text NOT NULL,
            agent_id        text,
            channel_id      text,
            document_id     uuid REFERENCES kb_documents (id) ON DELETE CASCADE,
            chunk_index     integer,
            text            text NOT NULL,
            content         jsonb,
            meta            jsonb NOT NULL DEFAULT '{}'::jsonb,
            embedding       vector(%s),
            embedding_model text,
            content_hash    text NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            expires_at      timestamptz,
            tsv             tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
            CHECK ((embedding IS NULL) = (embedding_model IS NULL))
        )$ddl$, dim);
END
$migration$;

-- Vector search (cosine); queries run with hnsw.iterative_scan so scope filters never starve results.
CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
-- Full text ('simple': PostgreSQL has no Ukrainian stemmer).
CREATE INDEX memories_tsv ON memories USING gin (tsv);
-- Scope filters.
CREATE INDEX memories_scope_agent ON memories (microdao_id, agent_id, created_at DESC);
CREATE INDEX memories_scope_channel ON memories (microdao_id, channel_id, created_at DESC) WHERE channel_id IS NOT NULL;
CREATE INDEX memories_scope_tier ON memories (microdao_id, tier);
CREATE INDEX memories_document ON memories (document_id, chunk_index) WHERE document_id IS NOT NULL;
-- The sweep: expired rows and rows still missing an embedding.
CREATE INDEX memories_expires ON memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memories_unembedded ON memories (created_at) WHERE embedding IS NULL;
-- De-duplication within a scope (knowledge-base chunks belong to their document instead).
CREATE UNIQUE INDEX memories_dedup ON memories (microdao_id, agent_id, channel_id, kind, content_hash)
    NULLS NOT DISTINCT WHERE document_id IS NULL;
