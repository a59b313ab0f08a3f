"""Domain errors of the rewards service; the shared handler renders them as problem+json."""

from __future__ import annotations

from shared.errors import Conflict, NotFound, Unprocessable


class InsufficientPoints(Conflict):
    code, title = "insufficient-points", "Not enough points"

    def __init__(self, *, available: int, required: int) -> None:
        super().__init__(
            f"The account has {available} available points; {required} are needed",
            balance={"available": available},
            required=required,
        )


class DuplicateSource(Conflict):
    code, title = "already-posted", "Already posted"


class RuleNotFound(NotFound):
    code, title = "earning-rule-not-found", "Earning rule not found"


class UnknownRuleEventType(Unprocessable):
    code, title = "unknown-event-type", "Unknown event type"

    def __init__(self, event_type: str, allowed: list[str]) -> None:
        super().__init__(
            f"event_type {event_type!r} does not earn points; use one of: {', '.join(allowed)}",
            errors=[
                {
                    "field": "body.event_type",
                    "message": f"unknown or not earnable event type {event_type!r}",
                    "type": "unknown_event_type",
                }
            ],
        )


class TierExists(Conflict):
    code, title = "tier-exists", "Tier already exists"


class TemplateNotFound(NotFound):
    code, title = "coupon-template-not-found", "Coupon template not found"


class CouponNotFound(NotFound):
    code, title = "coupon-not-found", "Coupon not found"


class CouponOutOfStock(Conflict):
    code, title = "coupon-out-of-stock", "Coupon out of stock"


class CouponLimitReached(Conflict):
    code, title = "coupon-limit-reached", "Per-member coupon limit reached"


class CouponNotRedeemable(Conflict):
    code, title = "coupon-not-redeemable", "Coupon cannot be redeemed"


class CouponNotValid(Conflict):
    code, title = "coupon-not-valid", "Coupon is not valid now"


class ItemNotFound(NotFound):
    code, title = "catalog-item-not-found", "Catalogue item not found"


class ItemOutOfStock(Conflict):
    code, title = "item-out-of-stock", "Catalogue item out of stock"


class InvalidGrant(Unprocessable):
    code, title = "invalid-grant", "Invalid reward grant"
