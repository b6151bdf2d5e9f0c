-- pgvector for embeddings. Tables come with the services that own them.
CREATE EXTENSION IF NOT EXISTS vector;
