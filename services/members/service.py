"""Members: registration, profile, sign-in, referrals, privacy, and the stamps consumers keep."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.members import events
from services.members.crypto import ContactVault
from services.members.models import Member, MemberInterest
from services.members.repository import MEMBERS, CommunityRepository, MemberRepository
from services.members.schemas import (
    AuthenticatedMember,
    Credentials,
    InviteeRead,
    MemberCard,
    MemberCreate,
    MemberExport,
    MemberPrivateRead,
    MembershipRead,
    MemberUpdate,
    ReferralTree,
    normalise_phone,
)
from services.members.settings import MembersSettings
from shared.auth import Principal, Role
from shared.db import utcnow
from shared.errors import Conflict, DomainError, Forbidden, NotFound, Unauthorized, Unprocessable
from shared.pagination import encode_cursor
from shared.passwords import hash_password_async, verify_password_async

# Unambiguous upper-case letters and digits: no 0/O, 1/I/L. 10 characters = ~49 bits.
INVITE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
INVITE_CODE_LENGTH = 10
# A check against a throwaway hash, so unknown usernames cost the same time as wrong passwords.
_DECOY_HASH = (
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
)


def new_invite_code() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_CODE_LENGTH))


def field_error(error: type[DomainError], field: str, message: str) -> DomainError:
    """A domain error that names the offending request field, like validation errors do."""
    return error(message, errors=[{"field": f"body.{field}", "message": message}])


class MemberNotFound(NotFound):
    code, title = "member-not-found", "Member not found"


class MemberErased(DomainError):
    status, code, title = 410, "member-erased", "Member erased"


class ContactAlreadyRegistered(Conflict):
    code, title = "contact-already-registered", "Contact already registered"


class ReferralCapReached(Conflict):
    code, title = "referral-cap-reached", "Referral cap reached"


class ReferrerAlreadySet(Conflict):
    code, title = "referrer-already-set", "Referrer already set"


class OwnerMustTransfer(Conflict):
    code, title = "owner-must-transfer", "Ownership must be transferred first"


class ReferralWindowClosed(Conflict):
    code, title = "referral-window-closed", "Referral window closed"


class InvalidCredentials(Unauthorized):
    code, title = "invalid-credentials", "Invalid credentials"


def _check_readable(member_id: str, erased_at: datetime | None, missing: bool) -> None:
    if missing:
        raise MemberNotFound(f"No member with id {member_id}")
    if erased_at is not None:
        raise MemberErased(f"Member {member_id} asked for their data to be erased")


class MemberService:
    def __init__(self, settings: MembersSettings) -> None:
        self.settings = settings
        self.vault = ContactVault(settings.contact_key.get_secret_value())

    @property
    def _activation_window(self) -> timedelta:
        return timedelta(days=self.settings.referral_activation_window_days)

    # --- reading and shaping ------------------------------------------------------------------

    async def get(self, session: AsyncSession, member_id: str) -> Member:
        member = await MemberRepository(session).get(member_id)
        _check_readable(member_id, None if member is None else member.erased_at, member is None)
        assert member is not None
        return member

    def private(self, member: Member) -> MemberPrivateRead:
        fields = {c.key: getattr(member, c.key) for c in MEMBERS.c}
        return self._private(fields | {"interests": member.interests})

    def _private(self, fields: dict[str, Any]) -> MemberPrivateRead:
        """``fields``: a member's columns by name and its ``interests``."""
        email, phone = fields["email_cipher"], fields["phone_cipher"]
        return MemberPrivateRead.model_validate(
            fields
            | {
                "email": self.vault.decrypt(email) if email else None,
                "phone": self.vault.decrypt(phone) if phone else None,
                "has_password": fields["password_hash"] is not None,
            }
        )

    async def view(
        self, session: AsyncSession, principal: Principal, member_id: str
    ) -> MemberPrivateRead | MemberCard:
        """What ``principal`` may see of the member: all of it, the card, or nothing."""
        fields = await MemberRepository(session).profile(member_id)
        _check_readable(member_id, None if fields is None else fields["erased_at"], fields is None)
        assert fields is not None
        if principal.can_act_for(member_id):
            return self._private(fields)
        if await self.may_see_card(session, principal, member_id):
            return MemberCard.model_validate(fields)
        raise Forbidden("Members see only themselves; moderators see their communities' members")

    async def may_see_card(
        self, session: AsyncSession, principal: Principal, member_id: str
    ) -> bool:
        communities = CommunityRepository(session)
        if principal.role is Role.PARTNER:
            return principal.has_scope("members:read")
        if principal.role is Role.MODERATOR:
            return bool(principal.communities) and await communities.in_any(
                sorted(principal.communities), member_id
            )
        if principal.role is Role.MEMBER:
            return await communities.share_moderated_community(principal.subject, member_id)
        return False

    # --- registration and profile -------------------------------------------------------------

    async def register(self, session: AsyncSession, data: MemberCreate) -> Member:
        repo = MemberRepository(session)
        now = utcnow()
        lookups = self._lookups(data.email, data.phone)
        if await repo.lookups_taken(list(lookups.values())):
            raise ContactAlreadyRegistered(
                "A member with this e-mail or phone is already registered"
            )
        referrer = await self._referrer_for(session, data.invite_code, now)
        member = Member(
            id=str(uuid.uuid4()),
            nickname=data.nickname,
            avatar_url=str(data.avatar_url) if data.avatar_url else None,
            gender=data.gender.value if data.gender else None,
            birth_year=data.birth_year,
            country=data.country,
            province=data.province,
            city=data.city,
            channel=data.channel.value,
            password_hash=await hash_password_async(data.password) if data.password else None,
            marketing_consent=data.marketing_consent,
            consent_at=now if data.marketing_consent else None,
            consent_source=data.consent_source if data.marketing_consent else None,
            invite_code=new_invite_code(),
            referrer_id=referrer.id if referrer else None,
            referred_at=now if referrer else None,
            referral_expires_at=now + self._activation_window if referrer else None,
            points_balance=0,
            created_at=now,
            updated_at=now,
            interest_rows=[MemberInterest(interest=i) for i in data.interests],
        )
        self._set_contacts(member, data.email, data.phone)
        try:
            async with session.begin_nested():
                await repo.add(member)
        except IntegrityError:  # a concurrent registration took the contact first
            raise ContactAlreadyRegistered(
                "A member with this e-mail or phone is already registered"
            ) from None
        await events.member_registered(session, member)
        if referrer is not None:
            await events.member_referred(session, member, referrer.id)
        if member.marketing_consent:
            await events.member_consent_changed(session, member)
        return member

    async def update(self, session: AsyncSession, member: Member, data: MemberUpdate) -> Member:
        given = data.model_dump(exclude_unset=True, exclude={"consent_source"})
        now = utcnow()
        if "email" in given or "phone" in given:
            email = given.get("email", self._email_of(member))
            phone = given.get("phone", self._phone_of(member))
            lookups = self._lookups(email, phone)
            if await MemberRepository(session).lookups_taken(
                list(lookups.values()), besides=member.id
            ):
                raise ContactAlreadyRegistered("Another member has this e-mail or phone")
            self._set_contacts(member, email, phone)
        if "password" in given:
            member.password_hash = await hash_password_async(given["password"])
        public_changed: list[str] = []
        for name in ("nickname", "gender", "birth_year", "country", "province", "city"):
            if name in given and getattr(member, name) != _plain(given[name]):
                setattr(member, name, _plain(given[name]))
                public_changed.append(name)
        if "avatar_url" in given:
            url = str(given["avatar_url"]) if given["avatar_url"] else None
            if url != member.avatar_url:
                member.avatar_url = url
                public_changed.append("avatar_url")
        interests = given.get("interests") or []
        if "interests" in given and sorted(interests) != member.interests:
            member.interest_rows = [MemberInterest(interest=i) for i in interests]
            public_changed.append("interests")
        consent_changed = (
            "marketing_consent" in given and given["marketing_consent"] != member.marketing_consent
        )
        if consent_changed:
            member.marketing_consent = given["marketing_consent"]
            member.consent_at = now
            member.consent_source = data.consent_source
        member.updated_at = now
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise ContactAlreadyRegistered("Another member has this e-mail or phone") from None
        if public_changed:
            await events.member_profile_updated(session, member, public_changed)
        if consent_changed:
            await events.member_consent_changed(session, member)
        return member

    def _lookups(self, email: str | None, phone: str | None) -> dict[str, str]:
        found = {}
        if email:
            found["email"] = self.vault.lookup(f"email:{email}")
        if phone:
            found["phone"] = self.vault.lookup(f"phone:{phone}")
        return found

    def _set_contacts(self, member: Member, email: str | None, phone: str | None) -> None:
        lookups = self._lookups(email, phone)
        member.email_cipher = self.vault.encrypt(email) if email else None
        member.email_lookup = lookups.get("email")
        member.phone_cipher = self.vault.encrypt(phone) if phone else None
        member.phone_lookup = lookups.get("phone")

    def _email_of(self, member: Member) -> str | None:
        return self.vault.decrypt(member.email_cipher) if member.email_cipher else None

    def _phone_of(self, member: Member) -> str | None:
        return self.vault.decrypt(member.phone_cipher) if member.phone_cipher else None

    # --- sign-in ------------------------------------------------------------------------------

    async def authenticate(self, session: AsyncSession, creds: Credentials) -> AuthenticatedMember:
        username = creds.username.strip()
        if "@" in username:
            lookup = self.vault.lookup(f"email:{username.lower()}")
        else:
            try:
                lookup = self.vault.lookup(f"phone:{normalise_phone(username, None)}")
            except ValueError:
                lookup = ""
        member = await MemberRepository(session).by_lookup(lookup) if lookup else None
        stored = member.password_hash if member and member.password_hash else _DECOY_HASH
        if not await verify_password_async(creds.password, stored) or member is None:
            raise InvalidCredentials("Unknown username or wrong password")
        moderates = await CommunityRepository(session).moderated_by(member.id)
        return AuthenticatedMember(
            member_id=member.id, nickname=member.nickname, moderates=sorted(moderates)
        )

    # --- referrals ----------------------------------------------------------------------------

    async def _referrer_for(
        self, session: AsyncSession, code: str | None, now: datetime, *, invitee: str | None = None
    ) -> Member | None:
        if code is None:
            return None
        repo = MemberRepository(session)
        referrer = await repo.by_invite_code(code.upper())
        if referrer is None:
            raise field_error(Unprocessable, "invite_code", "No member has this invite code")
        if referrer.id == invitee:
            raise field_error(Unprocessable, "invite_code", "A member cannot invite itself")
        if not await repo.take_referral_slot(
            referrer.id, now.date(), self.settings.referral_daily_cap
        ):
            raise ReferralCapReached(
                "This invite code has brought in its daily maximum of members; try tomorrow "
                "or register without it",
                cap=self.settings.referral_daily_cap,
            )
        return referrer

    async def claim_referrer(self, session: AsyncSession, member: Member, code: str) -> Member:
        """Add an invite code after registering, within the claim window; once only."""
        now = utcnow()
        if member.referrer_id is not None:
            raise ReferrerAlreadySet("This member already has a referrer")
        window = timedelta(days=self.settings.referral_claim_window_days)
        if now - member.created_at > window:
            raise ReferralWindowClosed(
                f"Invite codes can be added within {window.days} days of registering"
            )
        referrer = await self._referrer_for(session, code, now, invitee=member.id)
        assert referrer is not None
        if referrer.referrer_id == member.id:
            raise field_error(Unprocessable, "invite_code", "Two members cannot invite each other")
        member.referrer_id, member.referred_at, member.updated_at = referrer.id, now, now
        member.referral_expires_at = now + self._activation_window
        await session.flush()
        await events.member_referred(session, member, referrer.id)
        return member

    async def referral_tree(
        self, session: AsyncSession, member: Member, after: str | None, limit: int
    ) -> ReferralTree:
        repo = MemberRepository(session)
        invited, activated, descendants = await repo.referral_counts(member.id)
        rows = await repo.invitees(member.id, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return ReferralTree(
            member_id=member.id,
            invite_code=member.invite_code,
            referrer_id=member.referrer_id,
            invited=invited,
            activated=activated,
            descendants=descendants,
            invitees=[
                InviteeRead(
                    member_id=m.id,
                    nickname=m.nickname,
                    referred_at=m.referred_at,
                    activated_at=m.referral_activated_at,
                )
                for m in rows
            ],
            next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
        )

    # --- privacy ------------------------------------------------------------------------------

    async def export(self, session: AsyncSession, member: Member) -> MemberExport:
        memberships = await CommunityRepository(session).memberships_of(member.id)
        return MemberExport(
            exported_at=utcnow(),
            profile=self.private(member),
            communities=[MembershipRead.model_validate(m) for m in memberships],
            invitees=await MemberRepository(session).invitee_ids(member.id),
        )

    async def erase(self, session: AsyncSession, member_id: str) -> datetime:
        """Blank every personal field, leave every community, keep the pseudonymous id."""
        member = await self.get(session, member_id)
        now = utcnow()
        communities = CommunityRepository(session)
        for membership in await communities.memberships_of(member.id):
            if membership.role == "owner":
                raise OwnerMustTransfer(
                    "Transfer ownership of your communities before erasing the account",
                    communities=[membership.community_id],
                )
            await communities.leave(membership.community_id, member.id)
        for name in _PERSONAL_FIELDS:
            setattr(member, name, None)
        member.nickname = "erased member"
        member.marketing_consent = False
        member.interest_rows = []
        member.erased_at = member.updated_at = now
        await session.flush()
        await events.member_erased(session, member.id, now)
        return now


_PERSONAL_FIELDS = (
    "avatar_url",
    "gender",
    "birth_year",
    "country",
    "province",
    "city",
    "email_cipher",
    "email_lookup",
    "phone_cipher",
    "phone_lookup",
    "password_hash",
    "consent_at",
    "consent_source",
    "invite_code",
    "last_active_at",
    "referral_expires_at",
)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


# --- what consumers keep up to date ---------------------------------------------------------


async def stamp_activity(
    session: AsyncSession, member_id: str, at: datetime, activated_by: str
) -> None:
    """Last-active time, and the first qualifying action that activates a pending referral."""
    await stamp_activities(session, [(member_id, at, activated_by)])


async def stamp_activities(
    session: AsyncSession, acts: Sequence[tuple[str, datetime, str]]
) -> None:
    """``stamp_activity`` for ``(member, at, activated_by)`` actions in their order.

    The same effect as one call per action, in two statements for the run: the latest
    time per member, and which of them still have a referral to activate (few do).
    """
    if not acts:
        return
    repo = MemberRepository(session)
    latest: dict[str, datetime] = {}
    for member_id, at, _ in acts:
        if member_id not in latest or at > latest[member_id]:
            latest[member_id] = at
    await repo.stamp_activities(latest)
    pending = await repo.with_pending_referral(list(latest))
    for member_id, at, activated_by in acts:
        if member_id not in pending:
            continue
        referrer_id = await repo.activate_referral(member_id, at)
        if referrer_id is not None:
            pending.discard(member_id)
            await events.member_referral_activated(
                session, member_id, referrer_id, activated_by, at
            )
