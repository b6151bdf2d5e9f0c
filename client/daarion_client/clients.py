"""Sync and async clients of the three services, one module each. Base URLs come from the environment
variables agent-runtime already uses: LLM_PROXY_URL, AGENT_MEMORY_URL, TOOLCORE_URL."""

from daarion_client.llm import AsyncLlmProxyClient, LlmProxyClient
from daarion_client.memory import AsyncMemoryClient, MemoryClient
from daarion_client.tools import AsyncToolcoreClient, ToolcoreClient

__all__ = [
    "AsyncLlmProxyClient",
    "AsyncMemoryClient",
    "AsyncToolcoreClient",
    "LlmProxyClient",
    "MemoryClient",
    "ToolcoreClient",
]
