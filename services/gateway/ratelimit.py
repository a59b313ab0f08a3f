"""Per-principal rate limits: fixed one-minute windows, in memory or shared through Redis."""

from __future__ import annotations

import math
import time
from typing import Protocol

from redis.asyncio import Redis

WINDOW_S = 60


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int) -> int | None:
        """Count one request; the seconds to wait when over ``limit``, else None."""

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """For one gateway replica; state dies with the process."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, int]] = {}

    async def hit(self, key: str, limit: int) -> int | None:
        now = time.time()
        window = int(now // WINDOW_S)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            count = 0
            if len(self._windows) > 100_000:  # drop stale keys now and then
                self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        count += 1
        self._windows[key] = (window, count)
        if count > limit:
            return max(1, math.ceil((window + 1) * WINDOW_S - now))
        return None

    async def close(self) -> None:
        self._windows.clear()


class RedisRateLimiter:
    """Shared by every gateway replica."""

    def __init__(self, url: str) -> None:
        self._redis: Redis = Redis.from_url(url)

    async def hit(self, key: str, limit: int) -> int | None:
        now = time.time()
        window = int(now // WINDOW_S)
        redis_key = f"ratelimit:{key}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(redis_key)
            pipe.expire(redis_key, WINDOW_S * 2)
            count, _ = await pipe.execute()
        if int(count) > limit:
            return max(1, math.ceil((window + 1) * WINDOW_S - now))
        return None

    async def close(self) -> None:
        await self._redis.aclose()


def rate_limiter(redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()
