"""The shape every HTTP function shares: a FastAPI app with /health, the X-Internal-Secret check,
the error model, and a Lambda handler that wraps the app in Mangum.

A function's ``app.py`` builds its app with :func:`create_app`, adds its routes, and exposes
``handler = lambda_handler(app)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mangum import Mangum

from daarion_common import __version__
from daarion_common.errors import ApiError, error_body, install_error_handlers
from daarion_common.observability import MetricUnit, logger, metrics

HEALTH_PATH = "/health"


class InternalSecretMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): every path but /health needs the secret.

    Enforced for every path, including unknown ones, so probing for routes without the secret
    learns nothing.
    """

    def __init__(self, app: Any, public_paths: frozenset[str] = frozenset({HEALTH_PATH})) -> None:
        self.app = app
        self.public_paths = public_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        from daarion_common import auth

        presented = None
        for name, value in scope.get("headers", []):
            if name == b"x-internal-secret":
                presented = value.decode("latin-1")
                break
        try:
            auth.verify(presented)
        except ApiError as exc:
            from starlette.responses import JSONResponse

            request_id = ((scope.get("aws.event") or {}).get("requestContext") or {}).get("requestId")
            response = JSONResponse(status_code=exc.status, content=error_body(exc.code, exc.message, request_id))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(service: str, *, health_path: str, openapi_path: str, description: str = "") -> FastAPI:
    """A FastAPI app answering ``GET /health`` and ``GET {health_path}`` without the secret.

    On one shared HTTP API only one function can own ``/health``; ``health_path`` is the
    service's own health route there (``/internal/llm/health``, ...). Likewise the OpenAPI document is
    served at ``openapi_path`` (a route of the shared API) and at ``/openapi.json`` (the service's own
    local port), both behind the secret like every route.
    """
    app = FastAPI(
        title=f"DAARION {service}",
        description=description,
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=openapi_path,
    )
    install_error_handlers(app)
    app.add_middleware(InternalSecretMiddleware, public_paths=frozenset({HEALTH_PATH, health_path}))

    def health() -> dict[str, str]:
        return {"status": "ok", "service": service, "version": __version__}

    app.add_api_route(HEALTH_PATH, health, methods=["GET"], tags=["health"])
    app.add_api_route(health_path, health, methods=["GET"], tags=["health"], name=f"{service}-health")

    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    app.add_api_route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)

    return app


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point for an HTTP function (API Gateway HTTP API, payload 2.0).

    A plain function (Powertools decorators need ``__name__``; Mangum objects have none) around
    one module-level Mangum adapter with ``lifespan="off"``: startup work happens at import.
    """
    from aws_lambda_powertools.logging import correlation_paths

    asgi = Mangum(app, lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = asgi(event, context)
        status = int(response.get("statusCode", 500))
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if status >= 500:
            metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        elif status >= 400:
            metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
        return response

    return handler


@contextmanager
def streamed_invocation(event: dict[str, Any], context: Any) -> Iterator[None]:
    """Around each invocation of the long path (``daarion_common.lambda_streaming ... --around`` this): what
    :func:`lambda_handler`'s decorators do on the buffered path — the request's correlation id and the
    invocation's fields on every log line, the metrics flushed as one EMF line when the invocation ends."""
    logger.structure_logs(
        append=True,
        function_request_id=getattr(context, "aws_request_id", None),
        function_arn=getattr(context, "invoked_function_arn", None),
    )
    logger.set_correlation_id(((event or {}).get("requestContext") or {}).get("requestId"))
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    try:
        yield
    finally:
        try:
            metrics.flush_metrics()
        except Exception as exc:  # metrics are never worth an answer: say so and go on
            logger.warning("metrics not flushed", extra={"error_type": type(exc).__name__, "error": str(exc)})
        logger.remove_keys(["function_request_id", "function_arn"])
