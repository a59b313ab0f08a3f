"""Request and response models of moderation: rules, reports, the queue and the audit log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.content.schemas import Input
from services.content.watchwords import RuleAction, RuleKind


class RuleCreate(Input):
    community_id: str | None = Field(
        None, max_length=36, description="Omitted: a global rule (operators only)."
    )
    kind: RuleKind = RuleKind.WORD
    value: str = Field(min_length=1, max_length=200)
    action: RuleAction
    replacement: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _replacement_only_for_replace(self) -> RuleCreate:
        if self.replacement is not None and self.action is not RuleAction.REPLACE:
            raise ValueError("replacement is only for the replace action")
        return self


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    community_id: str | None
    kind: RuleKind
    value: str
    action: RuleAction
    replacement: str | None
    created_by: str
    created_at: datetime


class RuleList(BaseModel):
    items: list[RuleRead]


class ReportReason(StrEnum):
    AD_SPAM = "ad_spam"
    ABUSE = "abuse"
    PRIVACY = "privacy"
    OTHER = "other"


class ReportCreate(Input):
    reason: ReportReason
    note: str | None = Field(None, max_length=500)


class ReportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    post_id: str
    reporter_id: str
    reason: ReportReason
    note: str | None
    weight: float
    status: str
    created_at: datetime


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    HIDE = "hide"
    RESTORE = "restore"


class DecisionCreate(Input):
    action: Decision
    reason: str = Field(min_length=1, max_length=500, description="Why; kept in the audit log.")


class TargetDecisionCreate(DecisionCreate):
    post_id: str | None = Field(None, min_length=1, max_length=36)
    comment_id: str | None = Field(None, min_length=1, max_length=36)

    @model_validator(mode="after")
    def _one_target(self) -> TargetDecisionCreate:
        if (self.post_id is None) == (self.comment_id is None):
            raise ValueError("give exactly one of post_id and comment_id")
        return self


class CaseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    community_id: str
    target_kind: str
    target_id: str
    reason: str
    words: list[str]
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class CasePage(BaseModel):
    items: list[CaseRead]
    next_cursor: str | None


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    community_id: str
    target_kind: str
    target_id: str
    case_id: str | None
    action: str
    actor_id: str
    actor_role: str
    reason: str
    created_at: datetime


class AuditPage(BaseModel):
    items: list[AuditRead]
    next_cursor: str | None


class CommunitySettings(Input):
    report_hide_threshold: float = Field(
        gt=0, le=1000, description="Sum of reporter trust weights that hides a post."
    )


class CommunitySettingsRead(BaseModel):
    community_id: str
    report_hide_threshold: float
