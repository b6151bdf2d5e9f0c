"""One source for every wire model: the functions and the client library both use daarion_contracts.

Fails if the client declares a pydantic model of its own, or if a route of a function takes or answers
with a model declared anywhere but in the contracts package — a field added on one side then cannot be
missed on the other.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

import daarion_client

CONTRACTS = "daarion_contracts"


def _client_modules() -> list[Any]:
    names = [f"daarion_client.{m.name}" for m in pkgutil.iter_modules(daarion_client.__path__)]
    return [importlib.import_module(name) for name in names]


def test_the_client_declares_no_wire_model_of_its_own() -> None:
    own = [
        f"{module.__name__}.{name}"
        for module in _client_modules()
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__
    ]
    assert not own, f"wire models declared in the client instead of {CONTRACTS}: {own}"


def test_the_clients_models_are_the_contracts() -> None:
    from daarion_client import models

    exported = [obj for obj in vars(models).values() if inspect.isclass(obj) and issubclass(obj, BaseModel)]
    assert exported, "daarion_client.models re-exports the contracts' response models"
    assert all(obj.__module__.startswith(CONTRACTS) for obj in exported)


def _models_of(annotation: Any) -> list[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_of(arg)]


@pytest.mark.parametrize("module", ["llm_proxy.app", "memory.app", "toolcore.app"])
def test_every_route_of_a_function_uses_the_contracts(module: str) -> None:
    app = importlib.import_module(module).app
    foreign = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        used = _models_of(route.response_model)
        if route.body_field is not None:
            used += _models_of(route.body_field.field_info.annotation)
        for spec in (route.responses or {}).values():
            used += _models_of(spec.get("model"))
        foreign += [f"{route.path} {status_or_body}" for status_or_body in [m.__module__ for m in used]
                    if not status_or_body.startswith(CONTRACTS)]  # fmt: skip
    assert not foreign, f"models from outside {CONTRACTS}: {foreign}"


@pytest.mark.parametrize("module", ["llm_proxy.app", "memory.app", "toolcore.app"])
def test_every_route_documents_its_answers(module: str) -> None:
    """Each route behind the secret documents a success model and its errors (401 at least)."""
    app = importlib.import_module(module).app
    paths = app.openapi()["paths"]
    missing = []
    for path, operations in paths.items():
        if path.endswith("/health"):
            continue
        for method, operation in operations.items():
            responses = operation.get("responses", {})
            if "401" not in responses:
                missing.append(f"{method.upper()} {path}: no 401")
            ok = [s for s in responses if s.startswith("2")]
            if not ok:
                missing.append(f"{method.upper()} {path}: no 2xx")
            for status in ok:
                content = responses[status].get("content") or {}
                if status != "202" and not any(media.get("schema") for media in content.values()):
                    missing.append(f"{method.upper()} {path}: {status} has no schema")
    assert not missing, missing
