"""The one machine-readable line every benchmark prints last: ``BENCH_ROWS <json>``.

Each ``bench/*.py`` keeps its own human-readable output and ends with one line
``BENCH_ROWS [{"bench": ..., "lane": ..., "what": ..., "figure": ..., ...}, ...]``;
``bench/run_all.py`` runs them all and renders the rows into BENCHMARKS.md.

Benchmarks run as scripts from the repository root (``.venv/bin/python bench/x.py``), so
Python puts this folder first on ``sys.path`` and they ``from report import BenchRows``.
The folder is not a package: nothing here is installed with the platform.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


# Timing helpers shared by the API benches: workers, results, percentiles.


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


@dataclass
class Result:
    name: str
    count: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def line(self, baseline: Result | None = None) -> str:
        text_ = f"  {self.name:<36} {self.rate:>9.0f}/s"
        if self.latencies_ms:
            p50, p95, p99 = percentiles(self.latencies_ms)
            text_ += f"   p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  p99 {p99:6.1f} ms"
        if baseline is not None:
            text_ += f"   ({self.rate / baseline.rate:.2f}x baseline)"
        return text_


async def run_workers(
    total: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await one(i)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies
