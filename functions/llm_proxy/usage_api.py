"""The usage API on the LLM Proxy's app: totals and series from the usage aggregates (issue #4)."""

from __future__ import annotations

from fastapi import APIRouter

from daarion_common.errors import not_built

router = APIRouter()


@router.get("/internal/llm/usage")
def usage() -> None:
    raise not_built("GET", "/internal/llm/usage", issue=4)
