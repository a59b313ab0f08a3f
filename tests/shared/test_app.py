"""How a started service runs its process: the collector settings of ``settled_heap``."""

from __future__ import annotations

import gc

from services.members.app import create_app
from services.members.settings import MembersSettings
from shared.app import GC_YOUNG_THRESHOLD, settled_heap
from tests.conftest import Databases, running


def test_settled_heap_freezes_startup_objects_and_collects_young_ones_less_often() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    built_at_startup = [{"n": n} for n in range(100)]
    with settled_heap():
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() >= frozen_before + len(built_at_startup)
        # A collection no longer scans what startup built: it stays out of every generation.
        assert not any(obj is built_at_startup for obj in gc.get_objects())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert any(obj is built_at_startup for obj in gc.get_objects(generation=2))


async def test_a_started_service_runs_with_the_settled_heap(databases: Databases) -> None:
    before = gc.get_threshold()
    settings = MembersSettings.model_validate(
        {"database_url": await databases.new("members"), "log_json": False}
    )
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
