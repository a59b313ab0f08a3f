"""Spending a member's points in rewards, for lottery entries priced in points.

The call is idempotent twice over: the ``Idempotency-Key`` makes rewards replay its first
answer, and the ledger entry's unique ``source`` (derived from the key) refuses a second
debit even after the key's record expired. So the same spend may be asked any number of
times (a retried request, the reconciliation job) and debits once.

The debit goes to rewards' internal spend route (never proxied by the gateway) under
the campaigns service's own identity with the ``points:spend`` scope, so the ledger
records a spend and rewards publishes ``points.spent`` like any redemption.
"""

from __future__ import annotations

import enum

import httpx

from shared.auth import Principal, Role
from shared.service_client import ServiceClient


class Spend(enum.Enum):
    DONE = "done"  # debited, now or by an earlier call with the same key
    REFUSED = "refused"  # certainly not debited (not enough points, invalid request)
    UNKNOWN = "unknown"  # no answer, or the first call is still running: ask again later


class RewardsClient(ServiceClient):
    """Injectable: tests hand it an ``httpx.AsyncClient`` on the real rewards app in process."""

    principal = Principal(
        subject="campaigns", role=Role.PARTNER, scopes=frozenset({"points:spend"})
    )

    async def spend(self, member_id: str, points: int, *, key: str, reason: str) -> Spend:
        """Debit ``points`` once per ``key``; the same key must always come with the same
        member, points and reason (rewards compares the bodies)."""
        try:
            response = await self._client.post(
                f"/internal/v1/accounts/{member_id}/spends",
                json={"amount": points, "reason_code": "lottery_entry", "reason": reason},
                headers={**self._token.header(), "Idempotency-Key": key},
            )
        except httpx.HTTPError:
            return Spend.UNKNOWN
        if response.status_code == 201:
            return Spend.DONE
        problem = _problem_type(response)
        if problem == "already-posted":
            return Spend.DONE
        if problem == "insufficient-points":
            return Spend.REFUSED
        if response.status_code in (400, 401, 403, 404, 422):
            return Spend.REFUSED
        return Spend.UNKNOWN


def _problem_type(response: httpx.Response) -> str:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return ""
    try:
        kind = response.json().get("type", "")
    except ValueError:
        return ""
    return str(kind).rsplit("/", 1)[-1]
