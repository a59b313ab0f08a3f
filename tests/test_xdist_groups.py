"""The heavy tests (tests/conftest.py: HEAVY) run one after another on one xdist worker."""

from __future__ import annotations

import pytest

from tests.conftest import HEAVY


def test_heavy_tests_are_grouped_for_one_worker(request: pytest.FixtureRequest) -> None:
    # This test is in HEAVY itself, so the list is never empty, whatever subset runs.
    heavy = [item for item in request.session.items if item.nodeid.startswith(HEAVY)]
    assert request.node in heavy
    for item in heavy:
        assert item.get_closest_marker("xdist_group") is not None, item.nodeid
    if getattr(request.config.option, "loadgroup", False):  # a worker of --dist loadgroup
        # xdist schedules by the node id's "@group" suffix, not by the mark itself.
        split = [item.nodeid for item in heavy if not item.nodeid.endswith("@heavy")]
        assert split == [], f"{len(split)} heavy tests would run beside each other"
