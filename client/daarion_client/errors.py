"""Typed errors. A service's refusal carries the service's own error code; nothing is swallowed."""

from __future__ import annotations

from typing import Any


class DaarionError(Exception):
    """Base of every error this library raises."""


class ServiceError(DaarionError):
    """The service answered with an error status."""

    def __init__(
        self, service: str, status: int, code: str, message: str, *, request_id: str | None = None, body: Any = None
    ) -> None:
        super().__init__(f"{service}: {status} {code}: {message}")
        self.service = service
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.body = body


class Unauthorized(ServiceError):
    """401: the X-Internal-Secret is missing or wrong."""


class NotFound(ServiceError):
    """404: unknown route, model, memory or tool."""


class InvalidRequest(ServiceError):
    """400/422: the request was malformed; ``fields`` names what was wrong."""

    @property
    def fields(self) -> list[dict[str, str]]:
        error = (self.body or {}).get("error", {}) if isinstance(self.body, dict) else {}
        return list(error.get("fields") or [])


class RateLimited(ServiceError):
    """429 after retries: ``retry_after`` says when to try again (seconds)."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class UpstreamError(ServiceError):
    """502/504: the service's own dependency (a provider, a tool target) failed."""


class ServiceUnavailable(ServiceError):
    """5xx after retries."""


class ConnectionFailed(DaarionError):
    """The service could not be reached (after retries), or did not answer in time."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.code = "connection_failed"


class DeadlineExceeded(ConnectionFailed):
    """The caller's deadline passed before the service answered."""

    def __init__(self, service: str, message: str = "deadline exceeded") -> None:
        super().__init__(service, message)
        self.code = "deadline_exceeded"


def error_for(service: str, status: int, body: Any, request_id: str | None, retry_after: float | None) -> ServiceError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
    elif isinstance(body, dict) and "message" in body:  # API Gateway's own answers
        code, message = "gateway_error", str(body["message"])
    else:
        code, message = "error", str(body)[:300]
    kwargs: dict[str, Any] = {"request_id": request_id, "body": body}
    if status == 401:
        return Unauthorized(service, status, code, message, **kwargs)
    if status == 404:
        return NotFound(service, status, code, message, **kwargs)
    if status in (400, 413, 422):
        return InvalidRequest(service, status, code, message, **kwargs)
    if status == 429:
        return RateLimited(service, status, code, message, retry_after=retry_after, **kwargs)
    if status in (502, 504):
        return UpstreamError(service, status, code, message, **kwargs)
    if status >= 500:
        return ServiceUnavailable(service, status, code, message, **kwargs)
    return ServiceError(service, status, code, message, **kwargs)


class StreamInterrupted(UpstreamError):
    """A streamed answer broke off after it began (the proxy's in-band ``stream_interrupted``, or the
    connection closed before ``[DONE]``): what arrived is all there is; the call is counted as failed."""
