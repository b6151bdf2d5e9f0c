"""daarion-client's LLM Proxy client against the real handler (API Gateway v2 events over loopback):
requests built with the contracts' request models, answers parsed with their response models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daarion_client import InvalidRequest, LlmProxyClient
from daarion_client.llm import _chat_body
from daarion_client.models import ChatResult, Usage
from daarion_contracts.llm import InternalEmbeddings, ModelCatalogue, ProxyResponse, TokenUsage

AGENT, DAO = "agent:sofia", "microdao:7"


def test_the_chat_body_is_what_agent_runtime_has_always_sent() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Sofia."},
        {"role": "user", "content": "Що нового?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "x", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
    ]  # fmt: skip
    body = _chat_body("gpt-4.1-mini", messages, AGENT, DAO, None, max_tokens=256, tools=None)
    by_hand = {
        "model": "gpt-4.1-mini",
        "messages": messages,
        "max_tokens": 256,
        "metadata": {"agent_id": AGENT, "microdao_id": DAO, "channel_id": None},
    }
    assert json.dumps(body, ensure_ascii=False) == json.dumps(by_hand, ensure_ascii=False)


def test_old_names_are_the_contracts_models() -> None:
    assert ChatResult is ProxyResponse and Usage is TokenUsage


def test_chat_embeddings_and_catalogue_through_the_handler(llm_bridge: Any) -> None:
    with LlmProxyClient(llm_bridge.url) as client:
        reply = client.chat("gpt-4.1-mini", [{"role": "user", "content": "Привіт"}], agent_id=AGENT, microdao_id=DAO)
        assert isinstance(reply, ProxyResponse) and reply.provider == "offline" and reply.usage.total_tokens > 0
        vectors = client.embeddings(["Привіт, світе", "Hello"], agent_id=AGENT, microdao_id=DAO, input_type="query")
        assert isinstance(vectors, InternalEmbeddings) and vectors.dimensions == 384 and len(vectors.embeddings) == 2
        catalogue = client.models()
        assert isinstance(catalogue, ModelCatalogue) and "gpt-4.1-mini" in {m.model for m in catalogue.models}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"agent_id": "agent\u0000sofia"}, "metadata.agent_id"),
        ({"microdao_id": ""}, "metadata.microdao_id"),
        ({"max_tokens": "10"}, "max_tokens"),
    ],
)
def test_an_invalid_request_is_refused_before_it_is_sent(llm_bridge: Any, call: dict[str, Any], field: str) -> None:
    kwargs: dict[str, Any] = {"agent_id": AGENT, "microdao_id": DAO, **call}
    with LlmProxyClient(llm_bridge.url) as client, pytest.raises(InvalidRequest) as refused:
        client.chat("gpt-4.1-mini", [{"role": "user", "content": "x"}], **kwargs)
    assert refused.value.status == 422 and refused.value.code == "invalid_request"
    assert field in [f["field"] for f in refused.value.fields]
    assert llm_bridge.invocations == 0
