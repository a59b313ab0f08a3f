"""Group commit: concurrent requests hand their work to one transaction per turn.

``GroupCommit.submit`` queues one request's work and waits for its own outcome. A
drain task takes everything waiting (up to ``max_batch``), hands it to ``run`` as one
batch and resolves each request with its result; whatever queued up meanwhile forms
the next batch. Work that arrives while every drain task has a batch in the database
starts another, up to ``in_flight`` at once. There is no timer: a batch goes out on
the next turn of the event loop, and under load each batch is what arrived while the
previous one was in the database. ``run`` answers ``AGAIN`` for work that must wait
for the next batch (a second request with the same key, say).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Again:
    def __repr__(self) -> str:
        return "AGAIN"


AGAIN = Again()
"""What ``run`` answers for work to retry in the next batch."""


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[Sequence[T]], Awaitable[Sequence[R | Again]]],
        *,
        max_batch: int,
        in_flight: int = 1,
    ) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError("a batch holds at least one request, and one batch runs")
        self._run = run
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._drainers: set[asyncio.Task[None]] = set()
        self._busy = 0  # drainers with a batch in hand

    async def submit(self, work: T) -> R:
        """Queue ``work`` for the next batch and wait for its own outcome."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        self._start_drainer()
        return await future

    def _start_drainer(self) -> None:
        # Another drainer only while every drainer has a batch in the database: one that is
        # idle (just created, or between batches) takes this work on its next turn.
        if self._busy == len(self._drainers) < self.in_flight:
            # A context of its own: a drainer serves every request, not the one that woke it.
            drainer = asyncio.get_running_loop().create_task(
                self._drain(), context=contextvars.Context()
            )
            self._drainers.add(drainer)

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                self._busy += 1
                if self._waiting:  # more than one batch waits: a free slot takes the rest
                    self._start_drainer()
                try:
                    results = await self._run([work for work, _ in batch])
                except Exception as exc:  # the batch failed as a whole: each request hears
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                finally:
                    self._busy -= 1
                again = []
                for (work, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Again):
                        again.append((work, future))
                    elif not future.done():
                        future.set_result(result)
                self._waiting[:0] = again
                batch = []
        except BaseException:
            # Cancelled (the loop is shutting down): nobody is left to run the rest.
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            # At once, not in a done callback: a request queued before that callback ran
            # would find every drainer slot taken and wait for ever.
            current = asyncio.current_task()
            if current is not None:
                self._drainers.discard(current)
