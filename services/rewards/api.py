from __future__ import annotations

from fastapi import APIRouter

from shared.web import TransactionalRoute

router = APIRouter(prefix="/v1/accounts", tags=["rewards"], route_class=TransactionalRoute)
