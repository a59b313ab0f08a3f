from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class MemberGrowth(BaseModel):
    total: int = Field(description="Members registered since the beginning.")
    new_in_period: int = Field(description="Members registered between `from` and `to`.")
    new_in_previous_period: int = Field(description="The same figure for the period before.")


class Overview(BaseModel):
    period_from: date
    period_to: date
    members: MemberGrowth
