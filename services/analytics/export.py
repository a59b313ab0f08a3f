"""CSV export of every metric table: ``?format=csv``, and ``table=`` where there are several."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.responses import Response

from services.analytics.schemas import (
    Activity,
    ContentMetrics,
    Funnel,
    Heatmap,
    Overview,
    Retention,
    TopContributors,
)
from shared.errors import Unprocessable


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class UnknownTable(Unprocessable):
    code, title = "unknown-table", "Unknown metric table"


Rows = list[dict[str, Any]]
M = TypeVar("M", bound=BaseModel)


def _dump(items: list[Any]) -> Rows:
    return [item.model_dump(mode="json") for item in items]


def _retention(r: Retention) -> Rows:
    rows: Rows = []
    for cohort in r.cohorts:
        row: dict[str, Any] = {"week_start": cohort.week_start.isoformat(), "size": cohort.size}
        for k, (active, share) in enumerate(zip(cohort.active, cohort.retained, strict=True), 1):
            row[f"week_{k}_active"] = active
            row[f"week_{k}_retained"] = share
        rows.append(row)
    return rows


def _heatmap(h: Heatmap) -> Rows:
    return [
        {"weekday": d, "hour": hour, "actions": actions}
        for d, row in enumerate(h.cells)
        for hour, actions in enumerate(row)
    ]


TABLES: dict[type[BaseModel], dict[str, Callable[[Any], Rows]]] = {
    Overview: {
        "figures": lambda o: [
            {"figure": name, **figure.model_dump(mode="json")} for name, figure in o.figures.items()
        ],
        "series": lambda o: _dump(o.series),
        "channels": lambda o: _dump(o.channels),
    },
    Activity: {"days": lambda a: _dump(a.days), "lifecycle": lambda a: _dump(a.lifecycle)},
    Heatmap: {"cells": _heatmap, "posting_hours": lambda h: _dump(h.best_posting_hours)},
    Funnel: {"steps": lambda f: _dump(f.steps)},
    Retention: {"cohorts": _retention},
    TopContributors: {
        "items": lambda t: _dump(t.items),
        "movement": lambda t: _dump(t.movement),
    },
    ContentMetrics: {"post": lambda c: [c.model_dump(mode="json")]},
}


def reply(answer: M, fmt: Format, table: str | None, name: str) -> M | Response:
    """The answer itself for JSON; one of its tables as ``text/csv`` for CSV."""
    if fmt is Format.JSON:
        return answer
    tables = TABLES[type(answer)]
    chosen = table or next(iter(tables))
    if chosen not in tables:
        raise UnknownTable(f"table must be one of: {', '.join(tables)}")
    rows = tables[chosen](answer)
    out = io.StringIO()
    fields = list(rows[0]) if rows else []
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{chosen}.csv"'},
    )
