"""Demo data: a believable brand community, written through the public API of a running platform.

Everything goes through the gateway as apps would send it: registrations,
sign-ins, communities, posts, comments, reactions, shares and views, a content
calendar in the evening peak, and (when those services answer) tiers, earning
rules, campaigns and a partner webhook. The same seed gives the same community.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.progress import Progress

INTERESTS = ("coffee", "tea", "fitness", "fashion", "beauty", "tech", "music", "travel", "food",
             "photography", "outdoor", "pets")  # fmt: skip
PROVINCES = {
    "CN-SH": ["Shanghai"], "CN-BJ": ["Beijing"], "CN-GD": ["Guangzhou", "Shenzhen"],
    "CN-ZJ": ["Hangzhou", "Ningbo"], "CN-SC": ["Chengdu"], "CN-JS": ["Nanjing", "Suzhou"],
}  # fmt: skip
CHANNELS = ("wechat", "weibo", "douyin", "zhihu", "app", "web", "offline", "partner")
CHANNEL_WEIGHTS = (30, 12, 20, 6, 18, 8, 4, 2)
COMMUNITIES = (
    ("Brew Lab", "Home baristas swapping recipes and latte art.", "#6f4e37"),
    ("21-Day Fit Club", "A daily check-in challenge for healthier habits.", "#2e8b57"),
    ("Street Style", "Outfits, drops and the people who wear them.", "#c71585"),
)
NICK_PARTS = ("Lin", "Mei", "Xiao", "Jun", "Hao", "Yu", "Chen", "Wei", "Lan", "Bo", "Qing", "An")
LINES = (
    "Tried a new pour-over ratio today, 1:15 is my sweet spot.",
    "Day {n} done! Legs are sore but happy.",
    "Which colour should I pick for the weekend drop?",
    "Sharing my morning routine, feedback welcome.",
    "Anyone joining the live session tonight at 8?",
    "Unboxing the new kit, first impressions inside.",
    "My top three tips for beginners.",
)
PASSWORD = "demo-password-1"  # noqa: S105 (demo accounts on a local platform)


@dataclass
class DemoReport:
    members: int = 0
    active_members: int = 0
    communities: int = 0
    posts: int = 0
    scheduled_posts: int = 0
    comments: int = 0
    reactions: int = 0
    shares: int = 0
    views: int = 0
    campaigns: int = 0
    checkins: int = 0
    contest_entries: int = 0
    votes: int = 0
    lottery_entries: int = 0
    flash_sale_claims: int = 0
    earning_rules: int = 0
    skipped: list[str] = field(default_factory=list)


class DemoError(RuntimeError):
    pass


class Demo:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        seed: int,
        members: int,
        active: int,
        admin: tuple[str, str],
        progress: Progress | None = None,
        concurrency: int = 8,
    ) -> None:
        self.http = client
        self.rng = random.Random(seed)
        self.size = members
        self.active_size = min(active, members)
        self.admin = admin
        self.progress = progress
        self.gate = asyncio.Semaphore(concurrency)
        self.report = DemoReport()
        self.operator: dict[str, str] = {}
        self.people: list[dict[str, Any]] = []
        self.tokens: dict[str, dict[str, str]] = {}
        self.communities: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []

    # --- plumbing -----------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, *, ok: Sequence[int] = (200, 201, 204), **kwargs: Any
    ) -> httpx.Response:
        async with self.gate:
            for attempt in range(8):
                response = await self.http.request(method, path, **kwargs)
                if response.status_code in (429, 503) and attempt < 7:
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                break
        if response.status_code not in ok:
            raise DemoError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    async def each(
        self, label: str, items: Sequence[Any], action: Callable[[Any], Awaitable[None]]
    ) -> None:
        task = self.progress.add_task(label, total=len(items)) if self.progress else None

        async def one(item: Any) -> None:
            await action(item)
            if self.progress is not None and task is not None:
                self.progress.advance(task)

        await asyncio.gather(*(one(item) for item in items))

    # --- the community ------------------------------------------------------------------------

    async def run(self) -> DemoReport:
        token = await self.call(
            "POST", "/v1/auth/token", data={"username": self.admin[0], "password": self.admin[1]}
        )
        self.operator = {"Authorization": f"Bearer {token.json()['access_token']}"}
        await self.configure_rewards()
        await self.register_members()
        await self.sign_in_active()
        await self.create_communities()
        await self.join_communities()
        await self.publish_posts()
        await self.interact()
        await self.schedule_calendar()
        await self.run_campaigns()
        return self.report

    def profile(self, i: int) -> dict[str, Any]:
        rng = self.rng
        province = rng.choice(sorted(PROVINCES))
        body: dict[str, Any] = {
            "nickname": f"{rng.choice(NICK_PARTS)}{rng.choice(NICK_PARTS)}{i}",
            "gender": rng.choices(["female", "male", "undisclosed"], (55, 40, 5))[0],
            "birth_year": rng.randint(1968, 2008),
            "country": "CN",
            "province": province,
            "city": rng.choice(PROVINCES[province]),
            "interests": rng.sample(INTERESTS, rng.randint(1, 4)),
            "channel": rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
            "email": f"demo{i}@fans.example.com",
            "marketing_consent": rng.random() < 0.45,
        }
        if i < self.active_size:
            body["password"] = PASSWORD
        return body

    async def register_members(self) -> None:
        bodies = [self.profile(i) for i in range(self.size)]
        invited = {i for i in range(self.active_size, self.size) if self.rng.random() < 0.15}
        referrers = {i: self.rng.randrange(self.active_size) for i in invited}
        self.people = [{} for _ in bodies]

        async def register(i: int) -> None:
            body = dict(bodies[i])
            if i in referrers:
                body["invite_code"] = self.people[referrers[i]]["invite_code"]
            response = await self.call(
                "POST", "/v1/members", json=body, ok=(201, 409),
                headers={"Idempotency-Key": f"demo-member-{i}"},
            )  # fmt: skip
            if response.status_code == 409:  # a capped referral: register without the code
                body.pop("invite_code", None)
                response = await self.call("POST", "/v1/members", json=body)
            self.people[i] = response.json() | {"email": body["email"]}
            self.report.members += 1

        # Referrers first, so their invite codes exist when invitees register.
        await self.each("members who post", list(range(self.active_size)), register)
        await self.each("other members", list(range(self.active_size, self.size)), register)

    async def sign_in_active(self) -> None:
        async def sign_in(i: int) -> None:
            person = self.people[i]
            response = await self.call(
                "POST", "/v1/auth/token", data={"username": person["email"], "password": PASSWORD}
            )
            self.tokens[person["id"]] = {
                "Authorization": f"Bearer {response.json()['access_token']}"
            }
            self.report.active_members += 1

        await self.each("sign-ins", list(range(self.active_size)), sign_in)

    async def create_communities(self) -> None:
        for index, (name, description, theme) in enumerate(COMMUNITIES):
            owner = self.people[index]
            response = await self.call(
                "POST", "/v1/communities", ok=(201, 409), headers=self.operator,
                json={"name": name, "description": description, "theme": theme,
                      "owner_id": owner["id"], "rules": "Be kind. No ads. Credit your sources."},
            )  # fmt: skip
            if response.status_code == 409:  # a second demo run on the same platform
                listed = await self.call("GET", "/v1/communities?limit=200", headers=self.operator)
                response_json = next(c for c in listed.json()["items"] if c["name"] == name)
            else:
                response_json = response.json()
            self.communities.append(response_json)
            self.report.communities += 1

    async def join_communities(self) -> None:
        pairs = [
            (person, community)
            for person in self.people[: self.active_size]
            for community in self.communities
            if self.rng.random() < 0.6
        ]

        async def join(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
            person, community = pair
            await self.call(
                "POST", f"/v1/communities/{community['id']}/members", json={},
                headers=self.tokens[person["id"]],
            )  # fmt: skip
            community.setdefault("fans", []).append(person)

        await self.each("joins", pairs, join)

    async def post_when_ready(self, headers: dict[str, str], body: dict[str, Any]) -> Any:
        """Content learns about communities and memberships by event; wait until it has."""
        for _ in range(120):
            response = await self.call("POST", "/v1/posts", json=body, headers=headers,
                                       ok=(201, 403, 422))  # fmt: skip
            if response.status_code == 201:
                return response.json()
            if "community" not in response.text:
                raise DemoError(f"POST /v1/posts: {response.text[:300]}")
            await asyncio.sleep(0.5)
        raise DemoError("content never learned about the demo communities")

    def post_body(self, community: dict[str, Any], n: int) -> dict[str, Any]:
        kind = self.rng.choices(["article", "image_text", "poll"], (3, 5, 1))[0]
        body: dict[str, Any] = {
            "type": kind, "community_id": community["id"],
            "title": f"{community['name']} #{n}",
            "body": f"{self.rng.choice(LINES).format(n=n % 21 + 1)} ({community['name']} #{n})",
            "tags": self.rng.sample(INTERESTS, 2),
        }  # fmt: skip
        if kind == "image_text":
            body["image_urls"] = [f"https://cdn.example.com/demo/{n}.jpg"]
        if kind == "poll":
            body.pop("body")
            body["options"] = [{"id": "a", "text": "Yes"}, {"id": "b", "text": "Not yet"}]
        return body

    async def publish_posts(self) -> None:
        jobs = []
        for community in self.communities:
            fans = community.get("fans", [])
            for n in range(max(5, len(fans) // 2)):
                if fans:
                    jobs.append((self.rng.choice(fans), community, n))

        async def publish(job: tuple[dict[str, Any], dict[str, Any], int]) -> None:
            author, community, n = job
            post = await self.post_when_ready(
                self.tokens[author["id"]], self.post_body(community, n)
            )
            post["fans"] = community.get("fans", [])
            self.posts.append(post)
            self.report.posts += 1

        await self.each("posts", jobs, publish)

    async def interact(self) -> None:
        jobs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for post in self.posts:
            for fan in post["fans"]:
                roll = self.rng.random()
                if roll < 0.5:
                    jobs.append(("view", post, fan))
                if roll < 0.3:
                    jobs.append(("reaction", post, fan))
                if roll < 0.08:
                    jobs.append(("comment", post, fan))
                if roll < 0.03:
                    jobs.append(("share", post, fan))

        async def act(job: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
            kind, post, fan = job
            headers = self.tokens[fan["id"]]
            path = f"/v1/posts/{post['id']}"
            if kind == "view":
                await self.call("POST", f"{path}/views", json={}, headers=headers)
                self.report.views += 1
            elif kind == "reaction":
                await self.call("POST", f"{path}/reactions", json={"kind": "like"},
                                headers=headers, ok=(200, 201))  # fmt: skip
                self.report.reactions += 1
            elif kind == "comment":
                body = {"body": self.rng.choice(LINES).format(n=1)}
                await self.call("POST", f"{path}/comments", json=body, headers=headers,
                                ok=(201, 409, 429))  # fmt: skip
                self.report.comments += 1
            else:
                await self.call("POST", f"{path}/shares", json={"channel": "wechat"},
                                headers=headers)  # fmt: skip
                self.report.shares += 1

        self.rng.shuffle(jobs)
        await self.each("interactions", jobs, act)

    async def schedule_calendar(self) -> None:
        """A month of operator posts at the evening peak (20:00-22:00 Shanghai time)."""
        shanghai = timedelta(hours=8)
        today = datetime.now(UTC).date()
        jobs = []
        for day in range(1, 31):
            for community in self.communities:
                if self.rng.random() < 0.5:
                    local = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(
                        days=day, hours=20 + self.rng.random() * 2
                    )
                    jobs.append((community, local - shanghai, day))

        async def schedule(job: tuple[dict[str, Any], datetime, int]) -> None:
            community, at, day = job
            body = self.post_body(community, 100 + day) | {"publish_at": at.isoformat()}
            body["type"], body["body"] = "article", f"Tonight's live session, day {day}."
            body.pop("image_urls", None)
            body.pop("options", None)
            await self.post_when_ready(self.operator, body)
            self.report.scheduled_posts += 1

        await self.each("content calendar", jobs, schedule)

    # --- rewards ------------------------------------------------------------------------------

    async def configure_rewards(self) -> None:
        """Fan tiers and earning rules first, so the activity below earns points."""
        tiers = (("fan", "Fan", 0), ("core_fan", "Core Fan", 500), ("super_fan", "Super Fan", 2000))
        for code, name, threshold in tiers:
            await self.call("POST", "/v1/tiers", headers=self.operator, ok=(201, 409, 422),
                            json={"code": code, "name": name, "threshold": threshold})  # fmt: skip
        rules = (
            ("Welcome", "member.registered", 50, None),
            ("Post published", "post.published", 20, 100),
            ("Comment", "comment.created", 5, 50),
            ("Like received", "reaction.added", 2, 100),
            ("Share", "post.shared", 5, 25),
            ("Daily check-in", "campaign.checked_in", 10, 10),
            ("Friend activated", "member.referral_activated", 100, None),
        )
        for name, event_type, points, daily_cap in rules:
            body = {"name": name, "event_type": event_type, "points": points,
                    "daily_cap": daily_cap, "tier_multipliers": {"super_fan": 1.5}}  # fmt: skip
            await self.call("POST", "/v1/earning-rules", json=body, headers=self.operator)
            self.report.earning_rules += 1

    # --- campaigns ----------------------------------------------------------------------------

    async def campaign(self, body: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        body = {"objective": "engagement", "starts_at": (now - timedelta(minutes=1)).isoformat(),
                "ends_at": (now + timedelta(days=30)).isoformat(), **body}  # fmt: skip
        created = await self.call("POST", "/v1/campaigns", json=body, headers=self.operator)
        campaign: dict[str, Any] = created.json()
        await self.call("POST", f"/v1/campaigns/{campaign['id']}/launch", headers=self.operator)
        self.report.campaigns += 1
        return campaign

    async def participate(self, path: str, fan: dict[str, Any], body: dict[str, Any]) -> bool:
        """Campaigns learn members and memberships by event: retry while they catch up."""
        for _ in range(60):
            response = await self.call("POST", path, json=body, headers=self.tokens[fan["id"]],
                                       ok=(201, 403, 404, 409, 422))  # fmt: skip
            if response.status_code == 201:
                return True
            if response.status_code == 409:
                return False
            await asyncio.sleep(0.5)
        self.report.skipped.append(f"{path}: {response.status_code}")
        return False

    async def run_campaigns(self) -> None:
        fit, style = self.communities[1], self.communities[2]
        challenge = await self.campaign({
            "name": "21-day fit challenge", "type": "checkin", "community_id": fit["id"],
            "timezone": "Asia/Shanghai", "budget_points": 200_000,
            "rules": {"days_required": 21, "mode": "consecutive", "makeup_cards": 2,
                      "milestones": [{"checkins": 7, "reward": {"kind": "points", "points": 50}}],
                      "completion_reward": {"kind": "points", "points": 500}},
        })  # fmt: skip
        referral = await self.campaign({
            "name": "Invite a friend", "type": "referral", "objective": "acquisition",
            "community_id": self.communities[0]["id"], "budget_points": 100_000,
            "rules": {"activation_window_days": 14, "per_referrer_cap": 10, "hold_days": 7,
                      "reward": {"kind": "points", "points": 100}},
        })  # fmt: skip
        contest = await self.campaign({
            "name": "Outfit of the week", "type": "ugc", "community_id": style["id"],
            "budget_points": 50_000,
            "rules": {"winners": 3, "votes_per_day": 5, "judge_weight": 0.3,
                      "prize": {"kind": "points", "points": 1000}},
        })  # fmt: skip
        lottery = await self.campaign({
            "name": "Lucky draw: a year of coffee", "type": "lottery", "objective": "awareness",
            "community_id": self.communities[0]["id"], "budget_points": 20_000,
            "rules": {"winners": 5, "prize": {"kind": "points", "points": 2000}},
        })  # fmt: skip
        del referral  # joined by inviters as they share their codes; nothing more to do here
        template = await self.call("POST", "/v1/coupons", headers=self.operator, json={
            "name": "Flash sale: 30% off the starter kit", "kind": "percent_off", "value": 30,
            "total_stock": 50, "per_member_limit": 1,
        })  # fmt: skip
        flash = await self.campaign({
            "name": "Friday 8pm flash sale", "type": "flash_sale", "objective": "sales",
            "community_id": self.communities[2]["id"], "budget_coupons": 50,
            "rules": {"stock": 50, "per_member_limit": 1,
                      "coupon_template_id": template.json()["id"]},
        })  # fmt: skip

        async def check_in(fan: dict[str, Any]) -> None:
            if await self.participate(f"/v1/campaigns/{challenge['id']}/checkins", fan,
                                      {"note": "Done for today"}):  # fmt: skip
                self.report.checkins += 1

        async def enter_draw(fan: dict[str, Any]) -> None:
            if await self.participate(f"/v1/campaigns/{lottery['id']}/entries", fan, {}):
                self.report.lottery_entries += 1

        async def claim(fan: dict[str, Any]) -> None:
            if await self.participate(f"/v1/campaigns/{flash['id']}/entries", fan, {}):
                self.report.flash_sale_claims += 1

        await self.each("check-ins", fit.get("fans", []), check_in)
        await self.each("flash-sale claims", style.get("fans", []), claim)
        await self.each("lottery entries", self.communities[0].get("fans", []), enter_draw)
        entries: list[str] = []
        style_posts = [p for p in self.posts if p["community_id"] == style["id"]]

        async def enter_contest(post: dict[str, Any]) -> None:
            author = next((f for f in style.get("fans", []) if f["id"] == post["author_id"]), None)
            if author is None:
                return
            path = f"/v1/campaigns/{contest['id']}/entries"
            response = await self.call("POST", path, json={"post_id": post["id"]},
                                       headers=self.tokens[author["id"]],
                                       ok=(201, 403, 404, 409, 422))  # fmt: skip
            if response.status_code == 201:
                entries.append(response.json()["id"])
                self.report.contest_entries += 1

        await self.each("contest entries", style_posts, enter_contest)

        async def vote(fan: dict[str, Any]) -> None:
            for entry_id in self.rng.sample(entries, min(3, len(entries))):
                response = await self.call(
                    "POST", f"/v1/campaigns/{contest['id']}/votes", json={"entry_id": entry_id},
                    headers=self.tokens[fan["id"]], ok=(201, 403, 409, 422, 429),
                )  # fmt: skip
                if response.status_code == 201:
                    self.report.votes += 1

        if entries:
            await self.each("votes", style.get("fans", []), vote)


async def run_demo(
    base_url: str,
    *,
    seed: int = 7,
    members: int = 2000,
    active: int = 200,
    admin: tuple[str, str] = ("admin", "admin"),
    progress: Progress | None = None,
) -> DemoReport:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        demo = Demo(client, seed=seed, members=members, active=active, admin=admin,
                    progress=progress)  # fmt: skip
        return await demo.run()
