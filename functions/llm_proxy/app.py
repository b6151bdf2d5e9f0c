"""LLM Proxy HTTP function: FastAPI app and its Lambda handler."""

from __future__ import annotations

from daarion_common.errors import not_built
from daarion_common.http_app import create_app, lambda_handler
from llm_proxy.models import ProxyRequest
from llm_proxy.usage_api import router as usage_router

app = create_app(
    "llm-proxy",
    health_path="/internal/llm/health",
    description="Logical-to-physical model routing, fallbacks, rate limits, usage and cost.",
)


@app.post("/internal/llm/proxy")
def proxy(request: ProxyRequest) -> None:
    raise not_built("POST", "/internal/llm/proxy", issue=3)


app.include_router(usage_router)

handler = lambda_handler(app)
