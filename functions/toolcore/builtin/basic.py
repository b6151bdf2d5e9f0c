"""Small built-in tools that need no downstream service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utc_now(args: dict[str, Any], context: dict[str, Any]) -> dict[str, str]:
    return {"now": datetime.now(UTC).isoformat()}
