"""How stored content becomes text (for search and for the prompt) and how duplicates are recognised."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_WS = re.compile(r"\s+")

# Conversation objects agent-runtime stores: {user_message, agent_reply, timestamp, ...}
_LABELS = (("user_message", "User"), ("agent_reply", "Agent"), ("summary", "Summary"), ("text", ""))


def normalize(text: str) -> str:
    return _WS.sub(" ", text).strip()


def content_hash(text: str) -> str:
    """Same text up to case and whitespace = same memory (within one scope)."""
    return hashlib.sha256(normalize(text).casefold().encode()).hexdigest()


def render(content: dict[str, Any] | str, *, labels: bool = True) -> str:
    """Readable text for a stored content object: what search indexes and what the prompt receives.

    ``labels=False`` is what is embedded: the same words without "User:"/"Agent:" and field names, which
    measurably helps E5 match a short exchange to a paraphrase in another language (README, "Embeddings").
    """
    if isinstance(content, str):
        return content.strip()
    lines: list[str] = []
    used: set[str] = set()
    for key, label in _LABELS:
        value = content.get(key)
        if isinstance(value, str) and value.strip():
            lines.append(f"{label}: {value.strip()}" if label and labels else value.strip())
            used.add(key)
    for key, value in content.items():
        if key in used or key == "timestamp" or value in (None, "", [], {}):
            continue
        rendered = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
        lines.append(f"{key.replace('_', ' ').capitalize()}: {rendered}" if labels else rendered)
    return "\n".join(lines).strip()


def embedding_text(text: str, content: dict[str, Any] | None, mode: str) -> str:
    """What is embedded for a row. In E5's symmetric (query) mode an exchange is embedded without its
    labels, as a paraphrase would be written (measured: README, "Embeddings"); otherwise its text."""
    if mode == "query" and isinstance(content, dict):
        plain = render(content, labels=False)
        if plain:
            return plain
    return text
