"""One OpenAPI document for the whole platform, merged from every service's own."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

SCHEMA_REF = "#/components/schemas/"


def _rename_conflicts(doc: dict[str, Any], taken: dict[str, Any], service: str) -> dict[str, Any]:
    """Prefix this service's schema names that clash with a different schema already merged."""
    schemas = doc.get("components", {}).get("schemas", {})
    clashes = [n for n, s in schemas.items() if n in taken and taken[n] != s]
    if not clashes:
        return doc
    text = json.dumps(doc)
    for name in clashes:
        text = text.replace(f'"{SCHEMA_REF}{name}"', f'"{SCHEMA_REF}{service.capitalize()}{name}"')
    renamed: dict[str, Any] = json.loads(text)
    own = renamed["components"]["schemas"]
    for name in clashes:
        own[f"{service.capitalize()}{name}"] = own.pop(name)
    return renamed


def merge(base: dict[str, Any], documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    paths = merged.setdefault("paths", {})
    schemas = merged.setdefault("components", {}).setdefault("schemas", {})
    tags = {t["name"]: t for t in merged.get("tags", [])}
    for service, doc in sorted(documents.items()):
        doc = _rename_conflicts(doc, schemas, service)
        for path, item in doc.get("paths", {}).items():
            if path.startswith("/v1/"):
                paths.setdefault(path, {}).update(item)
        schemas.update(doc.get("components", {}).get("schemas", {}))
        for tag in doc.get("tags", []):
            tags.setdefault(tag["name"], tag)
    merged["paths"] = dict(sorted(paths.items()))
    if tags:
        merged["tags"] = list(tags.values())
    return merged


class MergedOpenAPI:
    def __init__(
        self,
        own: Callable[[], dict[str, Any]],
        clients: dict[str, httpx.AsyncClient],
        cache_s: float,
    ) -> None:
        self._own = own
        self._clients = clients
        self._cache_s = cache_s
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def document(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._cached is not None and self._cached[0] > now:
            return self._cached[1]
        names = list(self._clients)
        results = await asyncio.gather(*(self._fetch(n) for n in names))
        documents = {n: d for n, d in zip(names, results, strict=True) if d is not None}
        merged = merge(self._own(), documents)
        missing = sorted(set(names) - set(documents))
        if missing:
            merged.setdefault("info", {})["x-unavailable-services"] = missing
        else:
            self._cached = (now + self._cache_s, merged)
        return merged

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            response = await self._clients[service].get("/openapi.json", timeout=3.0)
            response.raise_for_status()
            doc: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return doc
