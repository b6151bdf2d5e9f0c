"""Clients for DAARION's agent services and the agent turn built on them.

from daarion_client import LlmProxyClient, MemoryClient, ToolcoreClient        # sync
from daarion_client import AsyncLlmProxyClient, AsyncMemoryClient, AsyncToolcoreClient
from daarion_client.agent import Blueprint, IncomingMessage, Services, run_turn
"""

from daarion_client._http import RetryPolicy
from daarion_client.clients import (
    AsyncLlmProxyClient,
    AsyncMemoryClient,
    AsyncToolcoreClient,
    LlmProxyClient,
    MemoryClient,
    ToolcoreClient,
)
from daarion_client.errors import (
    ConnectionFailed,
    DaarionError,
    DeadlineExceeded,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    StreamInterrupted,
    Unauthorized,
    UpstreamError,
)
from daarion_client.llm import StreamDone, StreamEvent, TextDelta, ToolCallDelta

__all__ = [
    "AsyncLlmProxyClient",
    "AsyncMemoryClient",
    "AsyncToolcoreClient",
    "ConnectionFailed",
    "DaarionError",
    "DeadlineExceeded",
    "InvalidRequest",
    "LlmProxyClient",
    "MemoryClient",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServiceError",
    "ServiceUnavailable",
    "StreamDone",
    "StreamEvent",
    "StreamInterrupted",
    "TextDelta",
    "ToolCallDelta",
    "ToolcoreClient",
    "Unauthorized",
    "UpstreamError",
]
