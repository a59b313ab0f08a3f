"""Request-scoped unit of work for service routes.

Routes built with ``TransactionalRoute`` get one session per request (``SessionDep``)
that commits once, after the endpoint returns and before the response is sent;
an error rolls everything back. POST routes honour ``Idempotency-Key`` here,
storing the response in that same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from shared import idempotency
from shared.auth import request_principal
from shared.errors import Unauthorized

if TYPE_CHECKING:
    from shared.app import ServiceRuntime


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def get_session(request: Request) -> AsyncSession:
    session: AsyncSession = request.state.session
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _idempotency_owner(request: Request) -> str:
    try:
        principal = request_principal(request)
    except Unauthorized:
        return "anonymous"
    return principal.subject if principal is not None else "anonymous"


class TransactionalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()

        async def handler(request: Request) -> Response:
            runtime = get_runtime(request)
            claim: idempotency.Claim | None = None
            key = request.headers.get(idempotency.HEADER)
            if request.method == "POST" and key is not None:
                body = await request.body()
                fingerprint = idempotency.request_hash(
                    request.method, request.url.path, request.url.query, body
                )
                outcome = await idempotency.begin(
                    runtime.db,
                    key=key,
                    owner=_idempotency_owner(request),
                    fingerprint=fingerprint,
                    ttl=timedelta(hours=runtime.settings.idempotency_ttl_h),
                )
                if isinstance(outcome, Response):
                    return outcome
                claim = outcome
            try:
                async with runtime.db.sessionmaker() as session:
                    request.state.session = session
                    response = await endpoint(request)
                    if response.status_code >= 400:
                        await session.rollback()
                        if claim is not None:
                            await idempotency.release(runtime.db, claim)
                        return response
                    if claim is not None:
                        await idempotency.complete(session, claim, response)
                    await runtime.db.commit(session)
            except BaseException:
                if claim is not None:
                    with contextlib.suppress(Exception):
                        await idempotency.release(runtime.db, claim)
                raise
            return response

        return handler
