from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import NAMING_CONVENTION


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DailyMemberGrowth(Base):
    """New members per UTC day; totals are sums over this table, never over raw events."""

    __tablename__ = "daily_member_growth"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    registered: Mapped[int] = mapped_column(Integer, default=0)
