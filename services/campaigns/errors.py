"""Domain errors of the campaigns service; one handler renders them as problem+json."""

from __future__ import annotations

from shared.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unprocessable


class CampaignNotFound(NotFound):
    code, title = "campaign-not-found", "Campaign not found"


class EntryNotFound(NotFound):
    code, title = "entry-not-found", "Entry not found"


class InvalidTransition(Conflict):
    code, title = "invalid-transition", "The campaign cannot make this transition now"


class CampaignNotOpen(Conflict):
    code, title = "campaign-not-open", "The campaign is not open for participation"


class WrongCampaignType(Conflict):
    code, title = "wrong-campaign-type", "This campaign type does not take this participation"


class AlreadyJoined(Conflict):
    code, title = "already-joined", "The member already joined this campaign"


class AlreadyCheckedIn(Conflict):
    code, title = "already-checked-in", "The member already checked in for this day"


class NoMakeupCards(Conflict):
    code, title = "no-makeup-cards", "The member has no make-up cards left"


class EntryLimitReached(Conflict):
    code, title = "entry-limit-reached", "The member has no entries left in this campaign"


class AlreadyEntered(Conflict):
    code, title = "already-entered", "This post is already entered in the campaign"


class AlreadyVoted(Conflict):
    code, title = "already-voted", "The member already voted for this entry"


class VoteQuotaExceeded(Conflict):
    code, title = "vote-quota-exceeded", "The member used today's votes"


class AlreadyDrawn(Conflict):
    code, title = "already-drawn", "The lottery was already drawn"


class NotCommunityMember(Forbidden):
    code, title = "not-community-member", "The member is not in the campaign's community"


class NotInTargetSegment(Forbidden):
    code, title = "not-in-target-segment", "The member is not in the campaign's target segment"


class SelfVote(Unprocessable):
    code, title = "self-vote", "Members cannot vote for their own entries"


class InvalidMakeupDay(Unprocessable):
    code, title = "invalid-makeup-day", "The make-up day is not a past day of the campaign"


class PostNotEligible(Unprocessable):
    code, title = "post-not-eligible", "The post cannot be entered"


class MembersUnavailable(ServiceUnavailable):
    code, title = "members-unavailable", "The members service did not answer"


class SoldOut(Conflict):
    code, title = "sold-out", "The flash sale's stock is gone"


class ClaimLimitReached(Conflict):
    code, title = "claim-limit-reached", "The member claimed as many as allowed"


class GroupNotOpen(Conflict):
    code, title = "group-not-open", "The group is full, formed or closed"


class GroupNotFound(NotFound):
    code, title = "group-not-found", "Group not found"


class InvalidApplication(Unprocessable):
    code, title = "invalid-application", "The application does not fit the campaign"


class NoSlotsLeft(Conflict):
    code, title = "no-slots-left", "Every trial slot is taken"


class ParticipantNotFound(NotFound):
    code, title = "participant-not-found", "The member did not join this campaign"


class CampaignLocked(Conflict):
    code, title = "campaign-locked", "Only draft or scheduled campaigns can be edited"


class InvalidCampaign(Unprocessable):
    code, title = "invalid-campaign", "The campaign's fields do not fit together"


class InsufficientPoints(Conflict):
    code, title = "insufficient-points", "The member has not enough points for this entry"


class NoTicketsEarned(Conflict):
    code, title = "no-tickets-earned", "The member has no check-ins left to turn into tickets"


class EntriesPending(Conflict):
    code, title = "entries-pending", "Some paid entries still wait on rewards"


class RewardsUnavailable(ServiceUnavailable):
    code, title = "rewards-unavailable", "The rewards service did not answer"
