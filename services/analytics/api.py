from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.analytics.schemas import Overview
from services.analytics.service import analytics_service
from shared.auth import Principal, require_scope
from shared.web import SessionDep, TransactionalRoute

router = APIRouter(prefix="/v1/metrics", tags=["metrics"], route_class=TransactionalRoute)

MetricsReader = Annotated[Principal, Depends(require_scope("metrics:read"))]


@router.get("/overview", response_model=Overview)
async def overview(
    session: SessionDep,
    _: MetricsReader,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> Overview:
    """Member growth with the period before for comparison (default: the last 30 days)."""
    end = to or datetime.now(UTC).date()
    start = from_ or end - timedelta(days=29)
    return await analytics_service.overview(session, start, end)
