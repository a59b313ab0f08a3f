"""No route dependency runs in the thread pool: a sync ``def`` dependency costs every
request a hop to a worker thread and back, for what is a dictionary lookup."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shared.settings import BACKEND_SERVICES

# Pydantic models read as forms are classes: instantiated once per sign-in, not per request.
FORM_MODELS = {"SignInForm"}


def api_routes(node: Any) -> Iterator[APIRoute]:
    for route in getattr(node, "routes", None) or ():
        if isinstance(route, APIRoute):
            yield route
        for attr in ("router", "app", "original_router"):
            inner = getattr(route, attr, None)
            if inner is not None and inner is not node:
                yield from api_routes(inner)


def runs_on_the_loop(call: Any) -> bool:
    if inspect.isclass(call):
        return call.__name__ in FORM_MODELS
    target = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def threaded(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        if sub.call is not None and not runs_on_the_loop(sub.call):
            yield getattr(sub.call, "__qualname__", repr(sub.call))
        yield from threaded(sub)


@pytest.mark.parametrize("service", [*BACKEND_SERVICES, "gateway"])
def test_every_route_dependency_runs_on_the_event_loop(service: str) -> None:
    create_app = importlib.import_module(f"services.{service}.app").create_app
    app = create_app(run_background=False)
    routes = list(api_routes(app.router))
    assert routes, "no routes found: the walk no longer matches FastAPI's router"
    found = sorted(
        {f"{route.path}: {name}" for route in routes for name in threaded(route.dependant)}
    )
    assert found == []
