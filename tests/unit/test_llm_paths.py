"""Every hop's deadline fits its hop: the routing config is refused at cold start when a model's timeout fits
no path, every HttpApi route of the template has a deadline under API Gateway's 30 s cut, and a model that
may need longer is served on the long path only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import template as tpl
from llm_proxy.config import API_GATEWAY_CUT_S, DEFAULT_PATH, RoutingConfig, api_deadline_s, get_config
from llm_proxy.service import LlmService

ROOT = Path(__file__).parents[2]
TEMPLATE = tpl.load_template(ROOT / "template.yaml")


def _shipped() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_PATH.read_text())


# ---------------------------------------------------------------------------- refused at cold start
def test_a_slow_model_on_the_api_path_is_refused():
    data = _shipped()
    data["models"]["gpt-4"]["long_path_only"] = False  # timeout_s 180 on a path that ends calls at 27 s
    with pytest.raises(ValueError, match=r"'gpt-4': timeout_s 180 does not fit the API path's deadline \(27 s"):
        RoutingConfig.model_validate(data)


def test_a_model_longer_than_the_long_path_is_refused():
    data = _shipped()
    data["models"]["deepseek-r1"]["timeout_s"] = 899
    with pytest.raises(ValueError, match=r"'deepseek-r1': timeout_s 899 fits no path"):
        RoutingConfig.model_validate(data)


def test_an_api_deadline_past_the_gateway_cut_is_refused(monkeypatch):
    data = _shipped()
    data["deadlines"]["api_s"] = 30
    with pytest.raises(ValueError, match="api_s"):
        RoutingConfig.model_validate(data)
    with monkeypatch.context() as env, pytest.raises(ValueError, match="LLM_PROXY_API_DEADLINE_S=31"):
        env.setenv("LLM_PROXY_API_DEADLINE_S", "31")
        LlmService(get_config())


def test_a_shorter_api_deadline_from_the_environment_is_checked_against_every_model(monkeypatch):
    with monkeypatch.context() as env:  # undone before the next service is built (fixture teardown)
        env.setenv("LLM_PROXY_API_DEADLINE_S", "10")  # gpt-4.1-mini may take 25 s
        with pytest.raises(ValueError, match=r"'gpt-4.1-mini': timeout_s 25 does not fit the API path's deadline \(10"):
            LlmService(get_config())


def test_the_function_refuses_a_config_that_cannot_fit_at_cold_start(tmp_path):
    """The Lambda init phase (importing the handler's module) fails, naming the model and the fix."""
    data = _shipped()
    data["models"]["deepseek-r1"]["long_path_only"] = False
    bad = tmp_path / "routing.json"
    bad.write_text(json.dumps(data))
    env = {**os.environ, "LLM_PROXY_CONFIG": str(bad), "POWERTOOLS_METRICS_DISABLED": "true"}
    code = "import llm_proxy.app"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "functions", env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "'deepseek-r1': timeout_s 420 does not fit the API path's deadline" in done.stderr
    assert "long_path_only: true" in done.stderr


# ---------------------------------------------------------------------------- the template
def _timeout(name: str) -> float:
    props = TEMPLATE["Resources"][name]["Properties"]
    return float(props.get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]))


def _http_api_functions() -> list[str]:
    return sorted(
        name
        for name, resource in TEMPLATE["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
        and any(e.get("Type") == "HttpApi" for e in (resource["Properties"].get("Events") or {}).values())
    )


def _own_deadline(name: str) -> float:
    """How long the function lets one request run, by its own bounds."""
    if name == "LlmProxyFunction":
        variables = TEMPLATE["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {})
        configured = variables.get("LLM_PROXY_API_DEADLINE_S")
        return float(configured) if configured else get_config().deadlines.api_s
    if name == "MemoryFunction":
        from daarion_common.memory.config import MemorySettings

        metadata = MemorySettings.model_fields["llm_proxy_timeout_seconds"].metadata
        ceiling = next(m.le for m in metadata if hasattr(m, "le"))
        return float(ceiling) + 4  # the proxy call + reading the channel and storing (see test_memory_bounds.py)
    if name == "ToolcoreFunction":
        from toolcore.registry import MAX_TOTAL_SECONDS

        return MAX_TOTAL_SECONDS
    raise AssertionError(f"{name} is served through the HTTP API: say what bounds its requests here")


@pytest.mark.parametrize("name", _http_api_functions())
def test_every_function_behind_the_http_api_ends_its_requests_before_the_30_s_cut(name):
    assert _timeout(name) <= API_GATEWAY_CUT_S, f"{name} runs past the gateway's cut: paid for nobody"
    assert _own_deadline(name) < API_GATEWAY_CUT_S
    assert _own_deadline(name) < _timeout(name)  # our answer (a 504) before Lambda kills the invocation


def test_the_llm_proxy_deadline_leaves_room_for_a_cold_start_and_the_usage_event():
    deadline = api_deadline_s(get_config())
    assert deadline + 2 <= API_GATEWAY_CUT_S
    assert _timeout("LlmProxyFunction") < API_GATEWAY_CUT_S


def test_every_model_fits_a_path_and_the_long_ones_are_marked():
    config = get_config()
    on_api = {n for n, m in config.models.items() if not m.long_path_only}
    assert {"gpt-4.1-mini", "deepseek-chat", "dagi-local-8b", "multilingual-e5-small"} <= on_api
    assert {n for n, m in config.models.items() if m.long_path_only} == {"gpt-4", "deepseek-r1"}
    for name in on_api:
        assert config.models[name].timeout_s <= config.deadlines.api_s, name
    for model in config.models.values():
        assert model.timeout_s <= config.deadlines.long_s


def test_every_chat_model_states_its_context_window():
    config = get_config()
    windows = {n: m.context_window for n, m in config.models.items() if m.kind == "chat"}
    assert windows == {
        "gpt-4.1-mini": 1_047_576,
        "gpt-4": 8_192,
        "deepseek-r1": 128_000,
        "deepseek-chat": 128_000,
        "dagi-local-8b": 2_048,
    }
    for name in windows:
        assert config.models[name].max_tokens <= windows[name]  # a completion at the cap can fit


# ---------------------------------------------------------------------------- the memory's summary call
def test_the_memory_summary_tells_the_proxy_how_long_it_waits(scripted_llm):
    """Summarize waits LLM_PROXY_TIMEOUT_SECONDS (20 s, inside its 30 s function) and sends that wait as
    X-Request-Timeout-Ms: the proxy ends the call within it, so no provider call outlives the summary."""
    from daarion_common.memory.config import MemorySettings
    from daarion_common.memory.llm import call_llm_proxy

    proxy = scripted_llm("proxy-stand-in")  # records every request; answers 404 on the proxy's path
    settings = MemorySettings(llm_proxy_url=proxy.base_url.removesuffix("/v1"))
    meta = {"agent_id": "agent:sofia", "microdao_id": "microdao:7", "channel_id": "general"}
    with pytest.raises(Exception):  # noqa: B017 - the stand-in is not a proxy; only the request matters here
        call_llm_proxy(settings, "gpt-4.1-mini", [{"role": "user", "content": "summarise"}], meta)
    (sent,) = proxy.requests
    assert sent.path == "/internal/llm/proxy"
    assert sent.headers["x-request-timeout-ms"] == str(int(settings.llm_proxy_timeout_seconds * 1000)) == "20000"
