from __future__ import annotations

from fastapi import APIRouter

from shared.web import TransactionalRoute

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], route_class=TransactionalRoute)
