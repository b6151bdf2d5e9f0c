"""The field types every contract is built from, validated once, the same way everywhere.

Rules (README, "Contracts"):
- **Identifiers** (``agent_id``, ``microdao_id``, ``channel_id``, ``tool_id``, document ids, model names)
  are opaque: 1..200 characters, not blank, no control characters (C0, DEL, C1), valid Unicode (no lone
  UTF-16 surrogates). They are validated, never normalised: ``agent:sofia`` and ``sofia`` are two agents.
- **Texts** (messages, memory content, queries, titles) and **every string inside a JSON object**
  (``meta``, ``content``, ``args``, ...) reject NUL (``\\u0000``) and lone surrogates with a 422 naming the
  field. They are rejected rather than stripped: PostgreSQL cannot store NUL in ``text``/``jsonb`` and a
  lone surrogate cannot be encoded as UTF-8, so silently changing a caller's text would store something
  other than what was sent, and a caller that sends them has a bug worth seeing.
- **Numbers are numbers**: integer and boolean fields are strict (``"10"`` and ``true`` are not 10).
- **JSON objects are bounded**: at most :data:`MAX_JSON_DEPTH` levels of nesting.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "MAX_ID_CHARS",
    "MAX_JSON_DEPTH",
    "Identifier",
    "StrictBool",
    "StrictInt",
    "Text",
    "WireModel",
    "bad_strings",
    "check_text",
]

MAX_ID_CHARS = 200
MAX_JSON_DEPTH = 32

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_text(value: str) -> str:
    """Reject NUL and lone surrogates (the message becomes the 422's field message)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000)")
    if _SURROGATE.search(value):
        raise ValueError("must be valid Unicode (contains a lone UTF-16 surrogate)")
    return value


def _check_identifier(value: str) -> str:
    check_text(value)
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def bad_strings(
    value: Any, loc: tuple[str | int, ...] = (), depth: int = 0
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each place in a JSON value that breaks the text rules, as ``(loc, message)``; nesting bounded."""
    if depth > MAX_JSON_DEPTH:
        yield loc, f"nested deeper than {MAX_JSON_DEPTH} levels"
        return
    if isinstance(value, str):
        try:
            check_text(value)
        except ValueError as exc:
            yield loc, str(exc)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                try:
                    check_text(key)
                except ValueError as exc:
                    yield loc, f"a key {exc}"
                    continue
            yield from bad_strings(item, (*loc, key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from bad_strings(item, (*loc, index), depth + 1)


class WireModel(BaseModel):
    """Base of every request model: unknown fields refused, and every string of the raw body (named
    fields, ``meta``, ``args``, pass-through fields alike) checked against the text rules first, each
    failure a 422 naming its exact path."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _text_rules(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if isinstance(data, dict):
            found = list(itertools.islice(bad_strings(data), 20))
            if found:
                raise ValidationError.from_exception_data(
                    cls.__name__,
                    [
                        InitErrorDetails(type=PydanticCustomError("invalid_text", message), loc=loc, input="")
                        for loc, message in found
                    ],
                )
        return handler(data)


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_CHARS, description="Opaque identifier: no control characters, not blank."),
    AfterValidator(_check_identifier),
]
"""An opaque identifier (see the module's rules)."""

Text = Annotated[str, AfterValidator(check_text)]
"""Free text: any Unicode but NUL and lone surrogates. Bound its length with ``Field(max_length=...)``."""
