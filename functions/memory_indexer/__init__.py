"""Memory indexer: embeds memories and knowledge-base chunks into pgvector."""
