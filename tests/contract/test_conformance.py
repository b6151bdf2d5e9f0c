"""Each HTTP function against its own OpenAPI document, property-based (Schemathesis + Hypothesis).

For every operation the app documents, Schemathesis generates requests from the document itself —
valid ones (positive) and ones that break it (negative) — and sends each over loopback HTTP to the
real Lambda handler as an API Gateway HTTP API v2 event (``LambdaBridge``). Every answer must be:
no 5xx, a status the route documents, the documented content type and headers, and a body that
validates against the documented schema (the error body included). Negative cases must not succeed.

Bounded so the suite stays fast and reproducible: ``CONFORMANCE_EXAMPLES`` positive and half as many
negative cases per operation, derandomised (the same cases on every run, CI included). The number of
cases run is printed at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation.modes import GenerationMode

from devstack.template import Resolver, functions, load_template
from tests.fixtures.llm_proxy import LambdaBridge
from tests.fixtures.memory import reset_memory_state

EXAMPLES = int(os.environ.get("CONFORMANCE_EXAMPLES", "25"))
SECRET = {"X-Internal-Secret": "dev-secret-token"}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
NEGATIVE_CHECKS = [*CHECKS, checks.negative_data_rejection]
# Identity headers the LLM Proxy's OpenAI-compatible routes and /mcp read (not part of the body schema).
IDENTITY = {"X-Agent-Id": "agent:sofia", "X-Microdao-Id": "microdao:7"}

CASES_RUN: dict[str, int] = {}


def _route_keys(resolver: Resolver, logical_id: str) -> list[tuple[str, str]]:
    specs = functions(load_template(), resolver)
    return [(r.method, r.path) for r in specs[logical_id].routes]


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and CASES_RUN:
        total = sum(CASES_RUN.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(CASES_RUN.items()))
        reporter.write_line(f"\nconformance: {total} generated cases through API Gateway v2 events ({detail})")


def _property(
    service: str, operation: Any, mode: GenerationMode, examples: int, run_checks: list[Any], url: str
) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        CASES_RUN[service] = CASES_RUN.get(service, 0) + 1
        response = case.call(base_url=url, headers={**SECRET, **IDENTITY})
        case.validate_response(response, checks=run_checks)

    return run


def _fuzz(service: str, app: Any, handler: Callable[..., Any], routes: list[tuple[str, str]]) -> None:
    """Every documented operation of ``app``, through its handler; failures are collected, then raised."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    bridge = LambdaBridge(handler, [*routes, ("GET", "/health")])  # as on the service's own port
    failures: list[str] = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode, examples, run_checks in (
                (GenerationMode.POSITIVE, EXAMPLES, CHECKS),
                (GenerationMode.NEGATIVE, max(1, EXAMPLES // 2), NEGATIVE_CHECKS),
            ):
                label = f"{operation.label} [{mode.value}]"

                run = _property(service, operation, mode, examples, run_checks, bridge.url)
                try:
                    run()
                except Unsatisfiable:
                    if mode is GenerationMode.POSITIVE:
                        raise
                    # nothing in the operation can be made invalid (no parameters, no body)
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{label}: {str(exc)[:1500]}")
    finally:
        bridge.close()
    assert not failures, f"{len(failures)} operations failed conformance:\n\n" + "\n\n".join(failures)


def test_llm_proxy_conforms_to_its_openapi(aws: Any) -> None:
    from llm_proxy.app import app, handler

    _fuzz("llm_proxy", app, handler, _route_keys(aws.resolver, "LlmProxyFunction"))


def test_memory_conforms_to_its_openapi(memory_db: str, aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_proxy.app import handler as llm_handler
    from memory.app import app, handler

    monkeypatch.delenv("INDEX_QUEUE_URL", raising=False)  # embed inline, as the local stack does
    llm = LambdaBridge(
        llm_handler, _route_keys(aws.resolver, "LlmProxyFunction")
    )  # summaries: the real proxy, offline model
    monkeypatch.setenv("LLM_PROXY_URL", llm.url)
    reset_memory_state()  # the memory service, built again with that environment
    try:
        _fuzz("memory", app, handler, _route_keys(aws.resolver, "MemoryFunction"))
    finally:
        llm.close()


def test_toolcore_conforms_to_its_openapi(aws: Any) -> None:
    from toolcore.app import app, handler

    _fuzz("toolcore", app, handler, _route_keys(aws.resolver, "ToolcoreFunction"))
