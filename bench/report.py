"""The one machine-readable line every benchmark prints last: ``BENCH_ROWS <json>``.

Each ``bench/*.py`` keeps its own human-readable output and ends with one line
``BENCH_ROWS [{"bench": ..., "lane": ..., "what": ..., "figure": ..., ...}, ...]``;
``bench/run_all.py`` runs them all and renders the rows into BENCHMARKS.md.

Benchmarks run as scripts from the repository root (``.venv/bin/python bench/x.py``), so
Python puts this folder first on ``sys.path`` and they ``from report import BenchRows``.
The folder is not a package: nothing here is installed with the platform.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PREFIX = "BENCH_ROWS "
ROW_KEYS = (
    "bench",
    "lane",
    "what",
    "figure",
    "unit",
    "baseline",
    "baseline_figure",
    "baseline_unit",
    "ratio",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "target",
    "met",
    "note",
)


def lane_of(name: str | None) -> str:
    """``sqlite`` / ``postgresql`` / ``-`` from a backend name, a lane label or a URL."""
    lowered = (name or "").lower()
    if lowered.startswith("sqlite"):
        return "sqlite"
    if lowered.startswith("postgres"):
        return "postgresql"
    return "-"


def number(value: Any, digits: int = 3) -> float | int | None:
    """A JSON-safe number: None for missing, NaN or infinite values (JSON has no NaN)."""
    if value is None or isinstance(value, bool):
        return None
    as_float = float(value)
    if not math.isfinite(as_float):
        return None
    if isinstance(value, int):
        return value
    return round(as_float, digits)


class BenchRows:
    """Collects a bench's rows; ``emit()`` prints them as the last line of its output."""

    def __init__(self, script: str) -> None:
        self.bench = Path(script).stem
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        *,
        lane: str,
        what: str,
        figure: Any,
        unit: str,
        baseline: str = "",
        baseline_figure: Any = None,
        baseline_unit: str | None = None,
        ratio: Any = None,
        p50_ms: Any = None,
        p95_ms: Any = None,
        p99_ms: Any = None,
        target: str = "",
        met: bool | None = None,
        note: str = "",
    ) -> None:
        """One figure. ``ratio`` defaults to figure / baseline_figure (same run, same units).

        For rates a ratio below 1 means slower than the baseline; for latencies (``unit``
        in ms) a ratio above 1 means slower.
        """
        figure_n, base_n = number(figure), number(baseline_figure)
        if ratio is None and figure_n is not None and base_n:
            ratio = figure_n / base_n
        self.rows.append(
            {
                "bench": self.bench,
                "lane": lane_of(lane),
                "what": what,
                "figure": figure_n,
                "unit": unit,
                "baseline": baseline,
                "baseline_figure": base_n,
                "baseline_unit": baseline_unit or unit,
                "ratio": number(ratio),
                "p50_ms": number(p50_ms, 1),
                "p95_ms": number(p95_ms, 1),
                "p99_ms": number(p99_ms, 1),
                "target": target,
                "met": met,
                "note": note,
            }
        )

    def emit(self) -> None:
        print(PREFIX + json.dumps(self.rows, ensure_ascii=False), flush=True)


def parse_rows(output: str) -> list[dict[str, Any]] | None:
    """The rows of the last ``BENCH_ROWS`` line in a bench's stdout, None if it has none."""
    for line in reversed(output.splitlines()):
        if line.startswith(PREFIX):
            rows = json.loads(line[len(PREFIX) :])
            if not isinstance(rows, list):
                raise ValueError("BENCH_ROWS is not a JSON list")
            return [{key: row.get(key) for key in ROW_KEYS} for row in rows]
    return None
