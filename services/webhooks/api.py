from __future__ import annotations

from fastapi import APIRouter

from shared.web import TransactionalRoute

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=TransactionalRoute)
