"""One error model for every HTTP function: a machine-readable code and a human sentence.

Body: ``{"error": {"code": "...", "message": "...", "fields": [...]?}, "request_id": "..."}``.
Request validation errors become 4xx responses naming the offending field, never a 500.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    501: "not_implemented",
    502: "upstream_error",
    503: "unavailable",
    504: "upstream_timeout",
}


class ApiError(Exception):
    """An error meant for the caller. ``message`` must never contain secrets."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers
        self.extra = extra or {}


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'metadata', 'agent_id') -> 'metadata.agent_id'; ('query', 'limit') -> 'query.limit'."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def error_body(code: str, message: str, request_id: str | None, **more: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    err.update({k: v for k, v in more.items() if v is not None})
    return {"error": err, "request_id": request_id}


def request_id_of(request: Request) -> str | None:
    event = request.scope.get("aws.event") or {}
    return (event.get("requestContext") or {}).get("requestId")


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from daarion_common.observability import logger

    def respond(
        request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> JSONResponse:
        return JSONResponse(status_code=status, content=body, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        body = error_body(exc.code, exc.message, request_id_of(request), fields=exc.fields, **exc.extra)
        return respond(request, exc.status, body, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            body = error_body("invalid_json", "The request body is not valid JSON.", request_id_of(request))
            return respond(request, 400, body)
        fields = [{"field": field_path(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in errors]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        body = error_body("invalid_request", f"Invalid request: {summary}", request_id_of(request), fields=fields)
        return respond(request, 422, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404:
            message = f"No route for {request.method} {request.url.path}."
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer when json.loads itself fails (RecursionError: JSON nested thousands deep)
            code, message = "invalid_json", "The request body is not valid JSON (or is nested too deeply)."
        body = error_body(code, message, request_id_of(request))
        return respond(request, exc.status_code, body, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"path": request.url.path})
        body = error_body("internal", "An internal error occurred; it has been logged.", request_id_of(request))
        return respond(request, 500, body)
