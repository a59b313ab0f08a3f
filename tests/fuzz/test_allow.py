"""A 405 names every method of its path, though FastAPI makes one route per method."""

from __future__ import annotations

from services.members.app import create_app
from services.members.settings import MembersSettings
from shared.auth import Role
from tests.conftest import Databases, auth, running


async def test_a_wrong_method_lists_every_method_its_path_serves(databases: Databases) -> None:
    settings = MembersSettings.model_validate(
        {"database_url": await databases.new("members"), "log_json": False}
    )
    async with running(create_app(settings, run_background=False)) as client:
        member = await client.request("OPTIONS", "/v1/members/m-1", headers=auth(Role.OPERATOR))
        collection = await client.put("/v1/members", headers=auth(Role.OPERATOR))
        # /v1/segments/preview also fits /v1/segments/{segment_id}; the concrete path wins.
        preview = await client.delete("/v1/segments/preview", headers=auth(Role.OPERATOR))
    assert member.status_code == 405
    assert member.headers["allow"] == "DELETE, GET, PATCH"
    assert member.headers["content-type"] == "application/problem+json"
    assert collection.status_code == 405
    assert collection.headers["allow"] == "GET, POST"
    assert preview.status_code == 405
    assert preview.headers["allow"] == "POST"
