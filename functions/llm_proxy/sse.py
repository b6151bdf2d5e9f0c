"""The SSE relay of a streamed chat completion: the upstream's lines passed on as they come, the completion
counted, and the call's one usage event sent when the stream ends (cut or not)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from daarion_common.observability import logger
from llm_proxy import accounting
from llm_proxy.service import LlmService, OpenedStream


async def relay(service: LlmService, opened: OpenedStream, include_usage: bool) -> AsyncIterator[str]:
    """Relay the upstream's SSE lines; an upstream that breaks off ends with an in-band error event."""
    content: list[str] = []
    usage_seen: dict[str, Any] | None = None
    error_code: str | None = None
    try:
        for line in opened.lines:
            if opened.call.time_left() <= 0:  # the path's deadline: stop the provider, tell the caller in-band
                error_code = "upstream_timeout"
                logger.warning("stream cut at the call's deadline", extra={"path": opened.call.path.value})
                error = {"error": {"code": error_code, "message": "The call reached its deadline mid-stream."}}
                yield f"data: {json.dumps(error)}\n\n"
                return
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if chunk.get("usage"):
                usage_seen = chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    content.append(delta["content"])
                for tool_call in delta.get("tool_calls") or []:
                    content.append(str((tool_call.get("function") or {}).get("arguments") or ""))
            if not chunk.get("choices") and chunk.get("usage") and not include_usage:
                continue  # we asked the upstream for usage; the caller did not
            if not include_usage and "usage" in chunk:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
            yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the upstream broke off mid-stream: tell the client in-band, count it
        error_code = "stream_interrupted"
        logger.warning("upstream stream interrupted", extra={"error_type": type(exc).__name__})
        error = {"error": {"code": error_code, "message": "The upstream stream was interrupted."}}
        yield f"data: {json.dumps(error)}\n\n"
    finally:
        opened.close()
        billed, spend = service.finish_stream(opened, "".join(content), usage_seen)
        accounting.record(service.usage, opened.call, billed, spend, error_code)
