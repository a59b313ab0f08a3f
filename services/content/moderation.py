"""Moderation: screening text on write, reports and trust, the queue, decisions and their audit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.content import events
from services.content.access import ensure_moderator, is_staff
from services.content.masking import mask_pii
from services.content.models import (
    Comment,
    ModerationAudit,
    ModerationCase,
    ModerationRule,
    Post,
    Report,
)
from services.content.moderation_schemas import (
    Decision,
    ReportCreate,
    RuleCreate,
)
from services.content.repository import (
    CommentRepository,
    CommunityRepository,
    ModerationRepository,
    PostRepository,
)
from services.content.watchwords import (
    InvalidPattern,
    RuleAction,
    RuleKind,
    WatchRule,
    combine,
    compile_rule,
    screen_many,
)
from shared.auth import Principal, Role
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound, Unprocessable

# Trust weights of reporters; see ``ModerationService.reporter_weight``.
STAFF_WEIGHT = 3.0
BASE_WEIGHT = 1.0
UPHELD_BONUS = 0.5
REJECTED_PENALTY = 0.5
MIN_WEIGHT = 0.25
MAX_MEMBER_WEIGHT = 3.0


class ContentBlocked(Unprocessable):
    code, title = "content-blocked", "The text contains blocked words"


class InvalidRule(Unprocessable):
    code, title = "invalid-rule", "Invalid moderation rule"


class RuleNotFound(NotFound):
    title = "Moderation rule not found"


class CaseNotFound(NotFound):
    title = "Moderation case not found"


class TargetNotFound(NotFound):
    title = "Post or comment not found"


class AlreadyReported(Conflict):
    code, title = "already-reported", "Already reported"


class DecisionNotApplicable(Conflict):
    code, title = "decision-not-applicable", "The decision does not apply in this state"


class UnknownCommunity(Unprocessable):
    code, title = "unknown-community", "Unknown community"

    def __init__(self, community_id: str) -> None:
        super().__init__(
            f"Community {community_id} is not known to the content service",
            errors=[{"field": "body.community_id", "message": "unknown community"}],
        )


@dataclass(frozen=True)
class Screened:
    """Texts as they are stored (rules applied, personal data masked) and the rule hits."""

    texts: list[str | None]
    rule_ids: list[str]
    words: list[str]
    action: RuleAction | None

    @property
    def needs_approval(self) -> bool:
        return self.action is RuleAction.REQUIRE_APPROVAL

    @property
    def queue_reason(self) -> str | None:
        if self.action is RuleAction.REQUIRE_APPROVAL:
            return "pending_approval"
        if self.action is RuleAction.FLAG:
            return "flagged"
        return None


def _watch_rule(rule: ModerationRule) -> WatchRule:
    return WatchRule(
        id=rule.id,
        kind=RuleKind(rule.kind),
        value=rule.value,
        action=RuleAction(rule.action),
        replacement=rule.replacement,
    )


class ModerationService:
    async def screen(
        self, session: AsyncSession, community_id: str, texts: list[str | None]
    ) -> Screened:
        """Apply the community's and the global rules, then mask personal data.

        A blocked text is refused outright; nothing is stored, so nothing is alerted.
        """
        rules = [
            _watch_rule(r) for r in await ModerationRepository(session).rules_for(community_id)
        ]
        screenings = screen_many(texts, rules)
        rule_ids, words, action = combine(screenings)
        if action is RuleAction.BLOCK:
            raise ContentBlocked("The text contains blocked words", words=list(words))
        stored = [None if s is None else mask_pii(s.text).text for s in screenings]
        return Screened(stored, list(rule_ids), list(words), action)

    async def record_hits(
        self,
        session: AsyncSession,
        screened: Screened,
        *,
        community_id: str,
        author_id: str,
        post_id: str | None = None,
        comment_id: str | None = None,
    ) -> None:
        """Alert on watched-word hits and queue the item when a moderator must look."""
        if screened.action is None:
            return
        now = utcnow()
        await events.moderation_alerted(
            session,
            community_id=community_id,
            author_id=author_id,
            rule_ids=screened.rule_ids,
            words=screened.words,
            action=screened.action.value,
            at=now,
            post_id=post_id,
            comment_id=comment_id,
        )
        if screened.queue_reason is not None:
            kind, target = ("comment", comment_id) if comment_id else ("post", post_id)
            assert target is not None
            await self._queue(
                session, community_id, kind, target, screened.queue_reason, screened.words
            )

    async def _queue(
        self,
        session: AsyncSession,
        community_id: str,
        target_kind: str,
        target_id: str,
        reason: str,
        words: list[str] | None = None,
    ) -> ModerationCase:
        repo = ModerationRepository(session)
        case = await repo.open_case(target_kind, target_id)
        if case is not None:
            return case
        case = ModerationCase(
            id=str(uuid.uuid4()),
            community_id=community_id,
            target_kind=target_kind,
            target_id=target_id,
            reason=reason,
            words=words or [],
            status="open",
            created_at=utcnow(),
        )
        await repo.add(case)
        return case

    # Rules -----------------------------------------------------------------

    async def add_rule(
        self, session: AsyncSession, principal: Principal, data: RuleCreate
    ) -> ModerationRule:
        if data.community_id is None:
            if not principal.is_operator:
                raise Forbidden("Only operators set global rules")
        else:
            if await CommunityRepository(session).get(data.community_id) is None:
                raise UnknownCommunity(data.community_id)
            await ensure_moderator(session, principal, data.community_id)
        try:
            compile_rule(data.kind, data.value)
        except InvalidPattern as exc:
            raise InvalidRule(str(exc)) from None
        rule = ModerationRule(
            id=str(uuid.uuid4()),
            community_id=data.community_id,
            kind=data.kind.value,
            value=data.value,
            action=data.action.value,
            replacement=data.replacement,
            created_by=principal.subject,
            created_at=utcnow(),
        )
        await ModerationRepository(session).add(rule)
        return rule

    async def list_rules(
        self, session: AsyncSession, principal: Principal, community_id: str | None
    ) -> list[ModerationRule]:
        if community_id is None:
            if not is_staff(principal):
                raise Forbidden("Only staff read the global rules")
        else:
            await ensure_moderator(session, principal, community_id)
        return await ModerationRepository(session).rules_of(community_id)

    async def delete_rule(self, session: AsyncSession, principal: Principal, rule_id: str) -> None:
        repo = ModerationRepository(session)
        rule = await repo.get_rule(rule_id)
        if rule is None:
            raise RuleNotFound(f"No moderation rule with id {rule_id}")
        if rule.community_id is None:
            if not principal.is_operator:
                raise Forbidden("Only operators delete global rules")
        else:
            await ensure_moderator(session, principal, rule.community_id)
        await repo.delete_rule(rule)

    async def set_threshold(
        self, session: AsyncSession, principal: Principal, community_id: str, threshold: float
    ) -> None:
        if await CommunityRepository(session).get(community_id) is None:
            raise UnknownCommunity(community_id)
        await ensure_moderator(session, principal, community_id)
        await CommunityRepository(session).set_threshold(community_id, threshold)

    # Reports ---------------------------------------------------------------

    async def reporter_weight(self, session: AsyncSession, principal: Principal) -> float:
        """How much one report of this reporter counts toward auto-hiding a post.

        Staff (moderators, operators) weigh ``STAFF_WEIGHT``. A member starts at
        ``BASE_WEIGHT``; each past report a moderator upheld adds ``UPHELD_BONUS``
        and each one rejected takes ``REJECTED_PENALTY`` away, kept between
        ``MIN_WEIGHT`` and ``MAX_MEMBER_WEIGHT``. So a reporter with a good record
        hides spam sooner, and one who reports in bad faith soon barely counts.
        """
        if principal.role in (Role.MODERATOR, Role.OPERATOR):
            return STAFF_WEIGHT
        history = await ModerationRepository(session).report_history(principal.subject)
        weight = (
            BASE_WEIGHT
            + UPHELD_BONUS * history.get("upheld", 0)
            - REJECTED_PENALTY * history.get("rejected", 0)
        )
        return min(MAX_MEMBER_WEIGHT, max(MIN_WEIGHT, weight))

    async def report(
        self, session: AsyncSession, principal: Principal, post: Post, data: ReportCreate
    ) -> Report:
        now = utcnow()
        weight = await self.reporter_weight(session, principal)
        values = {
            "id": str(uuid.uuid4()),
            "post_id": post.id,
            "community_id": post.community_id,
            "reporter_id": principal.subject,
            "reason": data.reason.value,
            "note": None if data.note is None else mask_pii(data.note).text,
            "weight": weight,
            "status": "open",
            "created_at": now,
        }
        if not await ModerationRepository(session).add_report(values):
            raise AlreadyReported("You have already reported this post")
        report = Report(**values)
        posts = PostRepository(session)
        total = await posts.add_report_weight(post.id, weight)
        await events.post_reported(session, post, report.id, principal.subject, report.reason, now)
        await self._queue(session, post.community_id, "post", post.id, "reported")
        community = await CommunityRepository(session).get(post.community_id)
        assert community is not None
        if total >= community.report_hide_threshold and await posts.move(
            post.id,
            "published",
            {"status": "hidden", "hidden_reason": "reports", "updated_at": now},
        ):
            await events.post_hidden(session, post, "reports", now)
        return report

    # Queue and decisions ---------------------------------------------------

    async def queue(
        self,
        session: AsyncSession,
        principal: Principal,
        community_id: str | None,
        status: str,
        cursor: str | None,
        limit: int,
    ) -> list[ModerationCase]:
        if community_id is None:
            if not principal.is_operator:
                raise Forbidden("Name a community_id; only operators see every community's queue")
            ids = None
        else:
            await ensure_moderator(session, principal, community_id)
            ids = [community_id]
        return await ModerationRepository(session).queue(ids, status, cursor, limit)

    async def audit(
        self,
        session: AsyncSession,
        principal: Principal,
        community_id: str,
        cursor: str | None,
        limit: int,
    ) -> list[ModerationAudit]:
        await ensure_moderator(session, principal, community_id)
        return await ModerationRepository(session).audit(community_id, cursor, limit)

    async def decide_case(
        self,
        session: AsyncSession,
        principal: Principal,
        case_id: str,
        action: Decision,
        reason: str,
    ) -> ModerationAudit:
        case = await ModerationRepository(session).get_case(case_id)
        if case is None:
            raise CaseNotFound(f"No moderation case with id {case_id}")
        await ensure_moderator(session, principal, case.community_id)
        if case.status != "open":
            raise DecisionNotApplicable("The case is already resolved")
        return await self.decide(
            session, principal, case.target_kind, case.target_id, action, reason
        )

    async def decide(
        self,
        session: AsyncSession,
        principal: Principal,
        target_kind: str,
        target_id: str,
        action: Decision,
        reason: str,
    ) -> ModerationAudit:
        now = utcnow()
        if target_kind == "post":
            post = await PostRepository(session).get(target_id, for_update=True)
            if post is None:
                raise TargetNotFound(f"No post with id {target_id}")
            community_id = post.community_id
            await ensure_moderator(session, principal, community_id)
            await self._decide_post(session, post, action, now)
        else:
            comment = await CommentRepository(session).get(target_id)
            if comment is None:
                raise TargetNotFound(f"No comment with id {target_id}")
            community_id = comment.community_id
            await ensure_moderator(session, principal, community_id)
            await self._decide_comment(session, comment, action, now)
        return await self.record_action(
            session,
            principal,
            community_id=community_id,
            target_kind=target_kind,
            target_id=target_id,
            action=action.value,
            reason=reason,
        )

    async def record_action(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        community_id: str,
        target_kind: str,
        target_id: str,
        action: str,
        reason: str,
    ) -> ModerationAudit:
        """Audit a moderator's action (who, when, why) and close the target's open case."""
        repo = ModerationRepository(session)
        now = utcnow()
        case = await repo.open_case(target_kind, target_id)
        if case is not None:
            case.status = "resolved"
            case.resolved_at = now
            case.resolved_by = principal.subject
        audit = ModerationAudit(
            id=str(uuid.uuid4()),
            community_id=community_id,
            target_kind=target_kind,
            target_id=target_id,
            case_id=case.id if case else None,
            action=action,
            actor_id=principal.subject,
            actor_role=principal.role.value,
            reason=reason,
            created_at=now,
        )
        await repo.add(audit)
        return audit

    async def _decide_post(
        self, session: AsyncSession, post: Post, action: Decision, now: datetime
    ) -> None:
        repo = ModerationRepository(session)
        if action in (Decision.APPROVE, Decision.RESTORE):
            if action is Decision.RESTORE and post.status not in ("hidden", "removed"):
                raise DecisionNotApplicable(f"A {post.status} post cannot be restored")
            if action is Decision.APPROVE and post.status not in ("hidden", "published"):
                raise DecisionNotApplicable(f"A {post.status} post cannot be approved")
            await repo.resolve_reports(post.id, "rejected", now)
            post.report_weight = 0.0
            if post.status == "published":
                return
            if post.published_at is None and post.publish_at is not None and post.publish_at > now:
                post.status, post.hidden_reason = "scheduled", None
                return
            first_time = post.published_at is None
            post.status, post.hidden_reason, post.updated_at = "published", None, now
            if first_time:
                post.published_at = now
                await events.post_published(session, post, now)
            return
        if action is Decision.HIDE:
            if post.status == "hidden" or post.status == "removed":
                raise DecisionNotApplicable(f"A {post.status} post cannot be hidden")
            post.status, post.hidden_reason, post.updated_at = "hidden", "moderator", now
            await repo.resolve_reports(post.id, "upheld", now)
            await events.post_hidden(session, post, "moderator", now)
            return
        if post.status == "removed":
            raise DecisionNotApplicable("The post is already removed")
        post.status, post.hidden_reason, post.updated_at = "removed", "moderator", now
        await repo.resolve_reports(post.id, "upheld", now)
        await events.post_removed(session, post, "moderator", now)

    async def _decide_comment(
        self, session: AsyncSession, comment: Comment, action: Decision, now: datetime
    ) -> None:
        post = await PostRepository(session).get(comment.post_id)
        assert post is not None
        posts = PostRepository(session)
        visible_before = comment.status == "visible"
        if action in (Decision.APPROVE, Decision.RESTORE):
            if comment.status == "visible" and action is Decision.RESTORE:
                raise DecisionNotApplicable("The comment is visible")
            first_time = comment.status == "pending"
            comment.status = "visible"
            if not visible_before:
                await posts.bump(post.id, comment_count=1)
            if first_time:
                await events.comment_created(session, post, comment)
            return
        if comment.status in ("hidden", "deleted") and action is Decision.HIDE:
            raise DecisionNotApplicable(f"A {comment.status} comment cannot be hidden")
        if comment.status == "deleted":
            raise DecisionNotApplicable("The comment is already deleted")
        comment.status = "hidden" if action is Decision.HIDE else "deleted"
        if visible_before:
            await posts.bump(post.id, comment_count=-1)
        if action is Decision.REJECT and comment.status == "deleted" and visible_before:
            await events.comment_deleted(session, post, comment, now)


moderation_service = ModerationService()
