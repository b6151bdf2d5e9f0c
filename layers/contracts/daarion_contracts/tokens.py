"""An upper bound of the tokens a provider bills for a chat request, without a tokenizer.

One estimator for everything that must not under-count: the LLM Proxy's reservations (a budget is never
overspent) and the context-window fitting of prompts. Pure Python, no download at run time.

The argument: every provider here (OpenAI's o200k/cl100k, DeepSeek, Llama 3 and the other
OpenAI-compatible servers) tokenizes with a *byte-level* BPE: each token stands for at least one byte of
the UTF-8 text, so a text of ``b`` bytes is at most ``b`` tokens, whatever the script (Latin 1 byte per
character, Cyrillic 2, CJK 3, emoji 4). What the provider adds around the text — the chat template's
special tokens per message, the rendering of tool schemas into the system prompt — is covered by
per-message and per-tool overheads larger than any template in use (OpenAI: 3 per message + 3 to prime the
reply, 1 per name; tools: a rendered schema is shorter than its JSON, plus a fixed preamble). Every part of
the request counts: message texts, names, assistant ``tool_calls``, tool results, ``tools``,
``tool_choice``, ``response_format``, non-text parts (an image part at most :data:`IMAGE_TOKENS`, beyond
its bytes). It over-counts on purpose: the usage recorder corrects reservations to what was billed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "REQUEST_OVERHEAD",
    "TOOL_OVERHEAD",
    "completion_bound",
    "prompt_bound",
    "text_bound",
]

MESSAGE_OVERHEAD = 8  # role markers, separators, an optional name marker (OpenAI's template uses 3-4)
REQUEST_OVERHEAD = 16  # priming of the reply, the tools/format preamble
TOOL_OVERHEAD = 32  # per tool: "namespace functions", "type name = (_: {" ... "}) => any;"
IMAGE_TOKENS = 6_000  # per image part, whatever its detail (gpt-4.1-mini's 1,536 patches × 1.62 ≈ 2,490)
_MEDIA_PARTS = frozenset({"image_url", "input_image", "image", "input_audio", "file", "input_file"})

# The keys of a request that the provider turns into prompt tokens (everything else is a parameter).
_PROMPT_KEYS = ("tools", "functions", "tool_choice", "function_call", "response_format")


def text_bound(text: str) -> int:
    """At most this many tokens for ``text`` under any byte-level BPE: its UTF-8 length."""
    return len(text.encode("utf-8", "surrogatepass"))


def _value_bound(value: Any) -> int:
    """Every string, key and number of a JSON value, as the bytes of its compact JSON form."""
    if value is None:
        return 0
    if isinstance(value, str):
        return text_bound(value)
    return text_bound(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def _content_bound(content: Any) -> int:
    if content is None or isinstance(content, str):
        return _value_bound(content)
    if isinstance(content, Sequence):
        total = 0
        for part in content:
            if isinstance(part, Mapping) and part.get("type") in _MEDIA_PARTS:
                total += IMAGE_TOKENS
            total += _value_bound(part)
        return total
    return _value_bound(content)


def prompt_bound(request: Mapping[str, Any]) -> int:
    """An upper bound of the prompt tokens billed for an OpenAI-shaped chat ``request``
    (``messages`` and the other prompt-bearing fields; token parameters are ignored here)."""
    total = REQUEST_OVERHEAD
    for message in request.get("messages") or []:
        total += MESSAGE_OVERHEAD
        if not isinstance(message, Mapping):
            total += _value_bound(message)
            continue
        for key, value in message.items():
            total += _content_bound(value) if key == "content" else _value_bound(value)
    for key in _PROMPT_KEYS:
        value = request.get(key)
        if value is None:
            continue
        if key in ("tools", "functions") and isinstance(value, Sequence):
            total += TOOL_OVERHEAD * len(value)
        total += _value_bound(value)
    return total


def completion_bound(request: Mapping[str, Any], max_tokens: int) -> int:
    """An upper bound of the completion tokens billed: ``n`` choices of at most ``max_tokens`` each, plus a
    predicted output (``prediction``: rejected prediction tokens are billed as completion tokens)."""
    n = request.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return choices * max_tokens + _value_bound((request.get("prediction") or {}).get("content"))
