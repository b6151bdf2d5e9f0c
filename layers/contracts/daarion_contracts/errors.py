"""The one error body every service answers with, and the codes it can carry.

``{"error": {"code": "...", "message": "...", "fields": [{"field", "message"}]?, ...}, "request_id": "..."}``

``code`` is machine-readable and stable; ``message`` is a human sentence (never a secret). Some codes
carry more keys in ``error`` (``rate_limited``: ``limit``, ``limit_value``, ``retry_after_s``;
``upstream_error``: ``providers``; ``model_not_found``: ``available_models``), declared below so a caller
generated from the OpenAPI document sees them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `metadata.agent_id` or `query.limit`.")
    message: str


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Machine-readable error code (see the route's documented responses).")
    message: str = Field(description="A human sentence; never contains secrets.")
    fields: list[FieldError] | None = Field(default=None, description="For 4xx on input: each offending field.")
    # rate_limited
    limit: str | None = None
    limit_value: float | None = None
    retry_after_s: float | None = Field(
        default=None, description="Seconds until the limit's window ends (also the `Retry-After` header)."
    )
    # upstream_error
    providers: list[dict[str, Any]] | None = None
    # model_not_found
    available_models: list[str] | None = None
    # context_length_exceeded
    context_window: int | None = None
    estimated_tokens: int | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str | None = Field(default=None, description="API Gateway's request id, when there is one.")


# Every code a service can answer with, by HTTP status. A route documents the subset it can return.
CODES: dict[int, dict[str, str]] = {
    400: {
        "invalid_json": "the body is not valid JSON",
        "upstream_rejected_request": "the provider refused the request as malformed (no fallback can fix that)",
        "context_length_exceeded": "the request cannot fit the context window of the model (nor of a fallback): "
        "`context_window`, `estimated_tokens`",
        "long_path_required": "the model may take longer than this path's deadline: call it through the long path",
    },
    401: {"unauthorized": "X-Internal-Secret missing or wrong"},
    404: {
        "not_found": "no such route, memory or document",
        "model_not_found": "unknown logical model (`available_models` lists the models)",
    },
    405: {"method_not_allowed": "the route does not take this method"},
    413: {
        "payload_too_large": "the request exceeds a size limit",
        "upstream_rejected_request": "the provider refused the request as too large",
        "request_over_limit": "this call alone is larger than a rate limit or budget (`limit`, `limit_value`); "
        "it can never be admitted, so it is not a 429",
    },
    422: {"invalid_request": "a field is invalid (`fields` names each one)"},
    429: {"rate_limited": "a rate limit or budget is exhausted (`Retry-After`, `limit`, `limit_value`)"},
    500: {"internal": "an unexpected error (logged)", "config_error": "the function's configuration is invalid"},
    502: {
        "upstream_error": "every provider failed (`providers` summarises each)",
        "llm_proxy_error": "the LLM Proxy failed; nothing was stored",
    },
    503: {
        "unavailable": "a dependency is unavailable",
        "auth_unconfigured": "no internal secret is configured or it cannot be read",
        "database_unavailable": "PostgreSQL cannot be reached",
        "database_unconfigured": "no database is configured",
        "provider_unconfigured": "no provider of the model's chain is configured",
        "provider_unavailable": "every provider of the model's chain is skipped (circuit open)",
        "limiter_busy": "the rate-limit store is contended",
        "limiter_unconfigured": "no rate-limit table is configured",
        "limiter_unavailable": "the rate-limit store cannot be reached",
        "embedding_unavailable": "the embedding model cannot be reached",
        "llm_proxy_unavailable": "the LLM Proxy cannot be reached",
        "llm_proxy_unconfigured": "LLM_PROXY_URL is not set",
        "usage_unavailable": "the usage table cannot be read",
        "usage_unconfigured": "no usage table is configured",
    },
    504: {"upstream_timeout": "the provider did not answer in time", "llm_proxy_timeout": "the LLM Proxy timed out"},
}


def responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for the given statuses, each with :class:`ErrorBody` and its codes listed.

    401 and 422 are on every route behind the secret that takes input; pass them explicitly anyway, so
    a route's documentation is read in one place.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        codes = CODES.get(status, {})
        listed = "; ".join(f"`{code}`: {what}" for code, what in codes.items())
        text = descriptions.get(f"r{status}") or listed or "error"
        out[status] = {"model": ErrorBody, "description": text}
    return out
