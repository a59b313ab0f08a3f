"""Contributor score with exponential time decay, and level bands."""

from __future__ import annotations

from datetime import date, timedelta

# Lower bounds of each band, highest first (docs/metrics.md).
BANDS: tuple[tuple[str, float], ...] = (
    ("leader", 50.0),
    ("contributor", 10.0),
    ("participant", 1.0),
    ("observer", 0.0),
)
BAND_NAMES: tuple[str, ...] = tuple(name for name, _ in reversed(BANDS))
LOOKBACK_HALF_LIVES = 8  # older actions weigh under 0.4 %: left out to bound the read
MAX_LOOKBACK_DAYS = 366


def band_of(score: float) -> str:
    for name, floor in BANDS:
        if score >= floor:
            return name
    return "observer"


def lookback_start(as_of: date, half_life_days: float) -> date:
    days = min(MAX_LOOKBACK_DAYS, int(half_life_days * LOOKBACK_HALF_LIVES))
    return as_of - timedelta(days=days)


def decay_weights(start: date, as_of: date, half_life_days: float) -> dict[date, float]:
    """Weight of an action on each day up to ``as_of``: 1 on that day, 1/2 a half-life before."""
    weights: dict[date, float] = {}
    day = start
    while day <= as_of:
        weights[day] = 0.5 ** ((as_of - day).days / half_life_days)
        day += timedelta(days=1)
    return weights
