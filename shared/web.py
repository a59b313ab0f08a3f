"""Request-scoped unit of work for service routes.

Routes built with ``TransactionalRoute`` get one session per request (``SessionDep``)
that commits once, after the endpoint returns and before the response is sent;
an error rolls everything back. POST routes honour ``Idempotency-Key`` here,
storing the response in that same transaction. A process runs a bounded number of
these requests at once (``max_concurrent_transactions``; by default only on SQLite), the
rest in arrival order.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Coroutine
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from shared import idempotency
from shared.auth import request_principal
from shared.db import committed_before
from shared.errors import Unauthorized

if TYPE_CHECKING:
    from shared.app import ServiceRuntime


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


# Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
# per request for a lookup.
async def get_session(request: Request) -> AsyncSession:
    session: AsyncSession = request.state.session
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_only(value: Any) -> Any:
    # Pydantic's lax date also takes ``0`` (a Unix timestamp); OpenAPI's ``format: date`` does not.
    if isinstance(value, date) or (isinstance(value, str) and ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("expected an ISO date, YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]


def json_integer(value: Any) -> Any:
    # JSON Schema's integer takes 3 and 3.0, never true or "3"; pydantic's lax int takes all four.
    if isinstance(value, bool | str):
        raise ValueError("expected an integer")
    return value


# Constraints go before the validator (``Annotated[int, Field(ge=0), BeforeValidator(...)]``)
# when the field is optional, or pydantic leaves them out of the JSON Schema.
JsonInt = Annotated[int, BeforeValidator(json_integer)]

# What ``idempotency.begin`` accepts, as a schema: visible ASCII, no edge spaces (HTTP strips them).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
_KEY_HEADER = {
    "alias": "Idempotency-Key",
    "max_length": idempotency.MAX_KEY_LENGTH,
    "pattern": IDEMPOTENCY_KEY_PATTERN,
    "description": "Replays the first response for the same key and body (Stripe semantics).",
}
IdempotencyKey = Annotated[str | None, Header(**_KEY_HEADER)]
RequiredIdempotencyKey = Annotated[str, Header(**_KEY_HEADER)]


async def _idempotency_key(key: IdempotencyKey = None) -> str | None:
    """Declares the header on every POST's OpenAPI operation; the route handler reads it."""
    return key


def _idempotency_owner(request: Request) -> str:
    try:
        principal = request_principal(request)
    except Unauthorized:
        return "anonymous"
    return principal.subject if principal is not None else "anonymous"


async def _fingerprint(request: Request) -> str:
    body = await request.body()
    return idempotency.request_hash(request.method, request.url.path, request.url.query, body)


async def _forget(session: AsyncSession, claim: idempotency.Claim | None) -> None:
    """Undo a failed request. Its claim goes with the rollback, unless the route had
    committed part of its work (and the claim with it): that claim is released."""
    await session.rollback()
    if claim is not None and committed_before(session):
        with contextlib.suppress(Exception):
            await idempotency.release(session, claim)


class TransactionalRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if "POST" in {m.upper() for m in kwargs.get("methods") or ()}:
            kwargs["dependencies"] = [
                *(kwargs.get("dependencies") or ()),
                Depends(_idempotency_key),
            ]
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()

        async def handler(request: Request) -> Response:
            runtime = get_runtime(request)
            key = request.headers.get(idempotency.HEADER) if request.method == "POST" else None
            async with runtime.admission, runtime.db.sessionmaker() as session:
                claim: idempotency.Claim | None = None
                try:
                    if key is not None:
                        outcome = await idempotency.begin(
                            session,
                            key=key,
                            owner=_idempotency_owner(request),
                            fingerprint=await _fingerprint(request),
                            ttl=timedelta(hours=runtime.settings.idempotency_ttl_h),
                        )
                        if isinstance(outcome, Response):
                            await session.rollback()
                            return outcome
                        claim = outcome
                    request.state.session = session
                    response = await endpoint(request)
                except BaseException:
                    await _forget(session, claim)
                    raise
                if response.status_code >= 400:
                    await _forget(session, claim)
                    return response
                if claim is not None:
                    await idempotency.complete(session, claim, response)
                await runtime.db.commit(session)
            return response

        return handler
