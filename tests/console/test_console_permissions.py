"""Who may use which console route: every route of the console's router × every identity.

The matrix below is written by hand, apart from the route declarations it checks: a route the
router has and the matrix lacks fails the test (so a new route must say who may use it), and
so does a matrix entry no route answers. For each (route, identity) the request is made over
real HTTP with a session of its own (started in the database), a valid CSRF token and a form
that would be accepted:
- allowed → 2xx or 3xx (never back to the login or the enrolment page);
- a role that is not allowed → 403;
- no session → 303 to the login page.
(The REST API half of the matrix comes with the move of the API to kizuna/api.)

The pages that set up the bot and the coupons take their roles from the REST API's groups:
MARKETING (admin, marketer) changes the FAQ, keyword replies, business hours and coupons;
TILL (admin, support) redeems a coupon; bot messages and the rich menu are admins'. Support
may read the FAQ and export it (the API's GET /faq is every staff role's too).
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import aiohttp
import pyotp
import sqlalchemy as sa
from aiohttp import web

from kizuna.campaigns import automations, campaigns, segments, sequences
from kizuna.storage import audit, canned, conversations, coupons, faq as faq_store
from kizuna.storage import staff as staff_store
from kizuna.storage import friend_sources, merges, orders, staff_sessions, tokens
from kizuna.storage.db import transaction
from kizuna.storage.models import Interaction, KeywordRule, MergeCandidate, OrderCreate, Staff
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.helpers import PASSWORD, Browser, Console, Member, stored_customer

ADMIN, MARKETER, SUPPORT = "admin", "marketer", "support"
STAFF = frozenset({ADMIN, MARKETER, SUPPORT})
ADMIN_ONLY = frozenset({ADMIN})
CONVERSATIONS = frozenset({ADMIN, SUPPORT})  # 1:1チャット: never marketers
MARKETING = frozenset({ADMIN, MARKETER})
TILL = frozenset({ADMIN, SUPPORT})
PUBLIC = "public"  # anyone, with or without a session
SECOND_FACTOR = "second_factor"  # only a session waiting for its TOTP code
IDENTITIES = ("admin", "marketer", "support", "awaiting_totp", "anonymous")
ROLE_OF = {"admin": ADMIN, "marketer": MARKETER, "support": SUPPORT}

# (method, path as the router spells it) → who may use it.
MATRIX: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/console/"): STAFF,  # marketers see the counts too
    ("GET", "/console/login"): PUBLIC,
    ("POST", "/console/login"): PUBLIC,
    ("GET", "/console/login/totp"): SECOND_FACTOR,
    ("POST", "/console/login/totp"): SECOND_FACTOR,
    ("POST", "/console/login/totp/cancel"): SECOND_FACTOR,
    ("POST", "/console/logout"): STAFF,
    ("POST", "/console/language"): PUBLIC,
    ("GET", "/console/staff"): ADMIN_ONLY,
    ("POST", "/console/staff"): ADMIN_ONLY,
    ("GET", "/console/staff/{staff_id}"): ADMIN_ONLY,
    ("POST", "/console/staff/{staff_id}/role"): ADMIN_ONLY,
    ("POST", "/console/staff/{staff_id}/disable"): ADMIN_ONLY,
    ("POST", "/console/staff/{staff_id}/enable"): ADMIN_ONLY,
    ("POST", "/console/staff/{staff_id}/sessions/end"): ADMIN_ONLY,
    ("POST", "/console/staff/{staff_id}/password"): ADMIN_ONLY,
    ("POST", "/console/staff/{staff_id}/totp/reset"): ADMIN_ONLY,
    ("GET", "/console/audit"): ADMIN_ONLY,
    ("GET", "/console/api-tokens"): ADMIN_ONLY,
    ("GET", "/console/retention"): ADMIN_ONLY,
    ("POST", "/console/retention/policies"): ADMIN_ONLY,
    ("POST", "/console/retention/run"): ADMIN_ONLY,
    ("GET", "/console/breach"): ADMIN_ONLY,
    ("GET", "/console/breach.csv"): ADMIN_ONLY,
    ("GET", "/console/merges"): ADMIN_ONLY,
    # 個人情報の請求 (console/views/data_requests.py); the erase without its typed number changes nothing
    ("POST", "/console/customers/{customer_id}/data/export"): ADMIN_ONLY,
    ("GET", "/console/customers/{customer_id}/data/correct"): ADMIN_ONLY,
    ("POST", "/console/customers/{customer_id}/data/correct"): ADMIN_ONLY,
    ("POST", "/console/customers/{customer_id}/data/stop"): ADMIN_ONLY,
    ("POST", "/console/customers/{customer_id}/data/resume"): ADMIN_ONLY,
    ("POST", "/console/customers/{customer_id}/data/erase"): ADMIN_ONLY,
    ("GET", "/console/data-requests"): ADMIN_ONLY,
    ("GET", "/console/provision-records"): ADMIN_ONLY,
    ("POST", "/console/merges/candidates/{item_id}/merge"): ADMIN_ONLY,
    ("POST", "/console/merges/candidates/{item_id}/dismiss"): ADMIN_ONLY,
    ("POST", "/console/merges/{item_id}/undo"): ADMIN_ONLY,
    ("POST", "/console/api-tokens"): ADMIN_ONLY,
    ("POST", "/console/api-tokens/{token_id}/revoke"): ADMIN_ONLY,
    ("GET", "/console/account"): STAFF,
    ("POST", "/console/account/password"): STAFF,
    ("GET", "/console/account/totp"): STAFF,
    ("POST", "/console/account/totp"): STAFF,
    ("POST", "/console/account/totp/disable"): STAFF,
    ("GET", "/console/conversations"): CONVERSATIONS,
    ("GET", "/console/conversations/{conversation_id}"): CONVERSATIONS,
    ("POST", "/console/conversations/{conversation_id}/take"): CONVERSATIONS,
    ("POST", "/console/conversations/{conversation_id}/assign"): CONVERSATIONS,
    ("POST", "/console/conversations/{conversation_id}/labels"): CONVERSATIONS,
    ("POST", "/console/conversations/{conversation_id}/messages"): CONVERSATIONS,
    ("POST", "/console/conversations/{conversation_id}/coupon"): CONVERSATIONS,
    ("POST", "/console/conversations/{conversation_id}/faq"): CONVERSATIONS,
    ("POST", "/console/conversations/{conversation_id}/resolve"): CONVERSATIONS,
    ("GET", "/console/media/{interaction_id}"): CONVERSATIONS,  # what customers sent in the chat
    ("GET", "/console/customers"): STAFF,  # 友だち: marketers work with them too
    ("GET", "/console/customers/{customer_id}"): STAFF,  # (the chat timeline on it only for CONVERSATIONS)
    ("POST", "/console/customers/{customer_id}/tags"): STAFF,
    ("POST", "/console/customers/{customer_id}/tags/remove"): STAFF,
    ("GET", "/console/live"): STAFF,  # each role is sent only what it may see (test_console_live.py)
    ("GET", "/console/canned"): ADMIN_ONLY,
    ("POST", "/console/canned"): ADMIN_ONLY,
    ("POST", "/console/canned/{canned_id}"): ADMIN_ONLY,
    ("POST", "/console/canned/{canned_id}/delete"): ADMIN_ONLY,
    ("GET", "/console/static/console.css"): PUBLIC,
    ("HEAD", "/console/static/console.css"): PUBLIC,
    # よくある質問: support reads (and exports) it, marketing changes it
    ("GET", "/console/faq"): STAFF,
    ("GET", "/console/faq/export.csv"): STAFF,
    ("POST", "/console/faq/import"): MARKETING,
    ("POST", "/console/faq/alternates"): MARKETING,
    ("GET", "/console/faq/new"): MARKETING,
    ("POST", "/console/faq"): MARKETING,
    ("GET", "/console/faq/entries/{faq_id}"): STAFF,
    ("POST", "/console/faq/entries/{faq_id}"): MARKETING,
    ("POST", "/console/faq/entries/{faq_id}/enabled"): MARKETING,
    # キーワード応答, 営業時間
    ("GET", "/console/keyword-rules"): MARKETING,
    ("POST", "/console/keyword-rules"): MARKETING,
    ("GET", "/console/keyword-rules/{rule_id}"): MARKETING,
    ("POST", "/console/keyword-rules/{rule_id}"): MARKETING,
    ("POST", "/console/keyword-rules/{rule_id}/delete"): MARKETING,
    ("GET", "/console/hours"): MARKETING,
    ("POST", "/console/hours"): MARKETING,
    # クーポン (definitions) and クーポン利用 (the till)
    ("GET", "/console/coupons"): MARKETING,
    ("GET", "/console/coupons/new"): MARKETING,
    ("POST", "/console/coupons"): MARKETING,
    ("GET", "/console/coupons/{coupon_id}"): MARKETING,
    ("POST", "/console/coupons/{coupon_id}"): MARKETING,
    ("POST", "/console/coupons/{coupon_id}/active"): MARKETING,
    ("GET", "/console/coupons/redeem"): TILL,
    ("POST", "/console/coupons/redeem/check"): TILL,
    ("POST", "/console/coupons/redeem"): TILL,
    ("POST", "/console/coupons/redeem/scan"): TILL,
    # セグメント: marketing's, as the REST API's /segments
    ("GET", "/console/segments"): MARKETING,
    ("GET", "/console/segments/new"): MARKETING,
    ("POST", "/console/segments/new"): MARKETING,
    ("POST", "/console/segments/preview"): MARKETING,
    ("GET", "/console/segments/{segment_id}"): MARKETING,
    ("GET", "/console/segments/{segment_id}/export.csv"): MARKETING,
    ("POST", "/console/segments/{segment_id}/tags"): MARKETING,
    # 配信: marketing's, as the REST API's /campaigns
    ("GET", "/console/campaigns"): MARKETING,
    ("GET", "/console/campaigns/new"): MARKETING,
    ("POST", "/console/campaigns/new"): MARKETING,
    ("POST", "/console/campaigns/estimate"): MARKETING,
    ("GET", "/console/campaigns/{campaign_id}"): MARKETING,
    ("GET", "/console/campaigns/{campaign_id}/progress"): MARKETING,
    ("POST", "/console/campaigns/{campaign_id}/{action}"): MARKETING,
    ("POST", "/console/campaigns/{campaign_id}/test"): MARKETING,
    # 自動化ルール
    ("GET", "/console/automations"): MARKETING,
    ("POST", "/console/automations/settings"): MARKETING,
    ("GET", "/console/automations/new"): MARKETING,
    ("POST", "/console/automations/new"): MARKETING,
    ("GET", "/console/automations/log"): MARKETING,
    ("GET", "/console/automations/{rule_id}"): MARKETING,
    ("POST", "/console/automations/{rule_id}"): MARKETING,
    ("POST", "/console/automations/{rule_id}/enabled"): MARKETING,
    ("POST", "/console/automations/{rule_id}/delete"): MARKETING,
    # ステップ配信
    ("GET", "/console/sequences"): MARKETING,
    ("GET", "/console/sequences/new"): MARKETING,
    ("POST", "/console/sequences/new"): MARKETING,
    ("GET", "/console/sequences/{sequence_id}"): MARKETING,
    ("GET", "/console/sequences/{sequence_id}/edit"): MARKETING,
    ("POST", "/console/sequences/{sequence_id}/edit"): MARKETING,
    ("POST", "/console/sequences/{sequence_id}/{action}"): MARKETING,
    # 流入経路
    ("GET", "/console/friend-sources"): MARKETING,
    ("POST", "/console/friend-sources"): MARKETING,
    ("POST", "/console/friend-sources/{source_id}/archive"): MARKETING,
    ("GET", "/console/friend-sources/{source_id}/qr.{kind}"): MARKETING,
    ("GET", "/console/analytics"): MARKETING,  # 分析
    # 応答メッセージ, リッチメニュー
    ("GET", "/console/texts"): ADMIN_ONLY,
    ("GET", "/console/texts/{key}"): ADMIN_ONLY,
    ("POST", "/console/texts/{key}/{locale}"): ADMIN_ONLY,
    ("POST", "/console/texts/{key}/{locale}/reset"): ADMIN_ONLY,
    ("GET", "/console/richmenu"): ADMIN_ONLY,
    ("POST", "/console/richmenu/setup"): ADMIN_ONLY,
    ("GET", "/console/richmenu/{key}.png"): ADMIN_ONLY,
    # プライバシー
    ("GET", "/console/privacy"): ADMIN_ONLY,
    ("POST", "/console/privacy/notices"): ADMIN_ONLY,
    ("POST", "/console/privacy/settings"): ADMIN_ONLY,
}
# Routes whose success is, rightly, a redirect to the login page.
ENDS_THE_SESSION = {("POST", "/console/logout"), ("POST", "/console/login/totp/cancel")}


def console_app(app: web.Application) -> web.Application:
    [resource] = [item for item in app.router.resources() if isinstance(item, web.PrefixedSubAppResource)
                  and item.canonical == "/console"]
    return resource._app


def router_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route of the console's router; the static files by one file."""
    found = set()
    for route in console_app(app).router.routes():
        path = route.resource.canonical
        if isinstance(route.resource, web.StaticResource):
            path += "/console.css"
        found.add((route.method, path))
    return found


class Fixtures:
    """The accounts the requests act as and on, and forms that would be accepted."""

    def __init__(self, console: Console):
        self.console = console
        self.members: dict[str, Member] = {}
        self.counter = itertools.count()

    async def setup(self) -> None:
        for role in (ADMIN, MARKETER, SUPPORT):
            # the admin has a second factor (LINE is connected in these settings: admins need one)
            self.members[role] = await self.console.add_staff(f"{role}@example.com", role, totp=role == ADMIN)
        self.members["awaiting_totp"] = await self.console.add_staff("pending@example.com", SUPPORT, totp=True)
        self.target = await self.console.add_staff("target@example.com", SUPPORT, totp=True)
        # a customer in a conversation, who sent an image (the media route's content)
        emulator = self.console.kizuna.emulator
        user = emulator.add_user(display_name="権限 確認")
        await emulator.follow(user.user_id)
        await emulator.send_text(user.user_id, "担当者")
        await emulator.send_image(user.user_id)
        self.customer_id = await stored_customer(self.console.kizuna, user.user_id)
        self.line_user_id = user.user_id  # a friend of the account: a campaign's test send may go to them

        async def stored() -> bool:
            async with self.console.sessions() as session:
                image = (await session.execute(sa.select(Interaction.id).where(
                    Interaction.customer_id == self.customer_id, Interaction.kind == "message.image"))).scalar_one_or_none()
                self.conversation = await conversations.active_for(session, self.customer_id)
            self.image_id = image
            return image is not None and self.conversation is not None

        await eventually(stored, what="the customer's handoff and image to be stored")
        async with transaction(self.console.sessions) as session:
            await faq_store.create_entry(session, faq_store.FaqFields("matrix", "送料はいくらですか", "全国一律500円です。"))
            self.segment = await segments.create(session, "matrix", {"all": [{"field": "registered", "op": "eq", "value": True}]},
                                                 now=utcnow())
            self.friend_source = await friend_sources.create(session, "matrix", None, actor=audit.CLI)
            self.campaign = await campaigns.create(
                session, name="matrix", segment_id=self.segment.id, rule=None,
                variants=[campaigns.VariantIn(messages=[{"type": "text", "text": "matrix"}], percent=100)],
                send_at=utcnow() + timedelta(days=1), now=utcnow())
            self.sequence = await sequences.create(session, sequences.SequenceCreate(
                name="matrix", trigger="registered", steps=[{"messages": [{"type": "text", "text": "matrix"}]}]),
                created_by="cli", now=utcnow())
            self.coupon = await coupons.create_coupon(session, {"title": "matrix", "discount_type": "amount",
                                                                "discount_value": 100, "valid_days": 30, "one_per_customer": False})

    async def fresh_canned(self) -> int:
        """A canned response of its own for each request (deleting one twice would be a 404)."""
        async with transaction(self.console.sessions) as session:
            return (await canned.create(session, shortcut=f"c{next(self.counter)}", title="お礼", text="{name}様、ありがとうございます。",
                                        actor=audit.CLI)).id

    async def fresh_automation(self) -> int:
        async with transaction(self.console.sessions) as session:
            return (await automations.create(session, automations.RuleCreate(
                name=f"matrix {next(self.counter)}", trigger="tag_added", trigger_value="matrix",
                actions=[{"type": "add_tag", "tag": "matrix-done"}]), created_by="cli", now=utcnow())).id

    async def fresh_code(self) -> str:
        """A coupon code that can be redeemed (each allowed redemption uses one up)."""
        async with transaction(self.console.sessions) as session:
            result = await coupons.issue(session, coupon_id=self.coupon.id, customer_id=self.customer_id, now=utcnow())
        return result.grant.code

    async def fresh_candidate(self) -> int:
        """A merge candidate of its own for each request (a decided one cannot be decided again):
        an order whose customer number is one new customer's and whose phone another's."""
        number = next(self.counter)
        phone = f"+8190{number % 10_000_000 + 10_000_000:08d}"  # 090-1xxx-xxxx: a valid mobile number
        async with transaction(self.console.sessions) as session:
            for external_id, references in ((f"M{number}-1", {"external_customer_id": f"m-{number}"}), (f"M{number}-2", {"phone": phone}),
                                            (f"M{number}-3", {"external_customer_id": f"m-{number}", "phone": phone})):
                order = {"external_id": external_id, "ordered_at": "2026-12-02T10:00:00+09:00", "total": 1000, **references}
                await orders.upsert(session, [OrderCreate.model_validate(order)], now=utcnow(), source="matrix")
            return (await session.execute(sa.select(sa.func.max(MergeCandidate.id)))).scalar_one()

    async def fresh_merge(self) -> int:
        """A merge of its own for each request that undoes one."""
        candidate = await self.fresh_candidate()
        async with transaction(self.console.sessions) as session:
            return (await merges.merge(session, candidate, actor=audit.CLI, now=utcnow())).id

    async def fresh_token(self) -> int:
        """An API token of its own for each request that revokes one (revoking twice is refused)."""
        async with transaction(self.console.sessions) as session:
            token, _plain = await tokens.create(session, name=f"matrix {next(self.counter)}", role="pos")
            return token.id

    async def fresh_rule(self) -> int:
        """A keyword rule of its own for each request that deletes one."""
        async with transaction(self.console.sessions) as session:
            rule = KeywordRule(match_type="contains", pattern=f"matrix {next(self.counter)}", reply_text="はい",
                               created_at=utcnow(), updated_at=utcnow())
            session.add(rule)
            await session.flush()
            return rule.id

    async def browser(self, identity: str) -> Browser:
        browser = self.console.browser()
        if identity == "anonymous":
            return browser
        member = self.members[identity]
        async with transaction(self.console.sessions) as session:
            staff = await session.get(Staff, member.id)
            _row, plain = await staff_sessions.start(session, staff, now=utcnow(), awaiting_totp=identity == "awaiting_totp")
        browser.set_session(plain)
        return browser

    async def path(self, path: str) -> str:
        if "{canned_id}" in path:
            path = path.replace("{canned_id}", str(await self.fresh_canned()))
        if path.startswith("/console/merges/candidates/"):
            path = path.replace("{item_id}", str(await self.fresh_candidate()))
        if "{item_id}" in path:
            path = path.replace("{item_id}", str(await self.fresh_merge()))
        if "{token_id}" in path:
            path = path.replace("{token_id}", str(await self.fresh_token()))
        if path.startswith("/console/automations/{rule_id}"):
            # (each request its own rule: a deleted one would be a 404 for the next identity)
            return path.replace("{rule_id}", str(await self.fresh_automation()))
        if path.endswith("/delete") and "{rule_id}" in path:
            return path.replace("{rule_id}", str(await self.fresh_rule()))
        if "{rule_id}" in path:
            self.rule_id = getattr(self, "rule_id", None) or await self.fresh_rule()
        return (path.replace("{staff_id}", str(self.target.id)).replace("{conversation_id}", str(self.conversation.id))
                .replace("{customer_id}", str(self.customer_id)).replace("{interaction_id}", str(self.image_id))
                .replace("{faq_id}", "matrix").replace("{rule_id}", str(getattr(self, "rule_id", "")))
                .replace("{coupon_id}", str(self.coupon.id)).replace("{segment_id}", str(self.segment.id))
                .replace("{source_id}", str(self.friend_source.id)).replace("qr.{kind}", "qr.png")
                .replace("{campaign_id}", str(self.campaign.id)).replace("{sequence_id}", str(self.sequence.id))
                .replace("{action}", "pause")
                .replace("{key}.png", "default.png").replace("{key}", "greeting").replace("{locale}", "ja"))

    async def form(self, method: str, path: str, identity: str) -> dict:
        member = self.members.get(identity)
        number = next(self.counter)
        if path == "/console/login":
            return {"email": self.target.email, "password": PASSWORD}
        if path == "/console/login/totp":
            return {"code": member.code() if member and member.totp_secret else "000000"}
        if path == "/console/language":
            return {"locale": "en"}
        if path == "/console/faq":
            return {"id": f"matrix-{number}", "question": f"質問 {number}", "answer": "回答です。", "alternates": "", "category": ""}
        if path == "/console/faq/alternates":
            return {"faq_id": "matrix", "text": f"送料の言い方 {number}"}
        if path == "/console/faq/entries/{faq_id}":
            return {"question": "送料はいくらですか", "answer": f"全国一律500円です。({number})", "alternates": "", "category": ""}
        if path.endswith("/enabled") or path.endswith("/active"):
            return {"enabled": "true", "active": "true"}
        if path.startswith("/console/keyword-rules") and not path.endswith("/delete"):
            return {"match_type": "contains", "pattern": f"キーワード {number}", "reply": "text", "reply_text": "はい",
                    "priority": "0", "enabled": "on"}
        if path == "/console/campaigns/{campaign_id}/test":
            return {"line_user_ids": self.line_user_id}
        if path == "/console/privacy/notices":
            return {"version": f"matrix-{number}", "url": "https://shop.example.jp/privacy", "text": "本文",
                    "purpose_membership": "会員", "purpose_marketing": "お知らせ", "purpose_analytics": "分析"}
        if path == "/console/privacy/settings":
            return {"withdrawal_data": "keep"}
        if path == "/console/hours":
            return {"configured": "yes", "mon-0-open": "10:00", "mon-0-close": "20:00", "holidays": "2026-12-31"}
        if path.startswith("/console/coupons/redeem"):
            return {"code": await self.fresh_code()} if member is not None and member.role in TILL else {"code": "x"}
        if path.startswith("/console/coupons") and not path.endswith("/active"):
            # (the matrix's coupon gives any number per customer, and has been given: that stays)
            return {"title": f"クーポン {number}", "discount_type": "amount", "discount_value": "100", "valid_days": "30"}
        if path == "/console/texts/{key}/{locale}":
            return {"text": f"友だち追加ありがとうございます ({number})"}
        if path in ("/console/segments/new", "/console/segments/preview"):
            return {"match": "all", "field_0": "rfm_r", "op_0": "gte", "value_0": "4", "name": f"セグメント {number}", "action": "save"}
        if path in ("/console/campaigns/new", "/console/campaigns/estimate"):
            tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
            return {"name": f"配信 {number}", "audience": f"segment:{self.segment.id}", "m_slots": "1", "m0_type": "text",
                    "m0_text": "matrix", "when": "at", "send_at": tomorrow, "action": "create"}
        if path in ("/console/automations/new", "/console/automations/{rule_id}"):
            return {"name": f"ルール {number}", "enabled": "on", "trigger": "tag_added", "trigger_value": "matrix",
                    "action0_type": "add_tag", "action0_tag": "matrix-done"}
        if path == "/console/automations/settings":
            return {"daily_hour": "9", "coupon_reminder_days": "3", "coupon_reminder_enabled": "on",
                    "coupon_reminder_text": "クーポンの有効期限が近づいています"}
        if path == "/console/automations/{rule_id}/enabled":
            return {"enabled": "0"}
        if path in ("/console/sequences/new", "/console/sequences/{sequence_id}/edit"):
            return {"name": f"ステップ {number}", "trigger": "registered", "name_fallback": "お客様", "steps": "1", "action": "save",
                    "s0_from": "enrolment", "s0_days": "0", "s0_hours": "0", "s0m_slots": "1", "s0m0_type": "text",
                    "s0m0_text": "matrix"}
        if path == "/console/api-tokens":
            return {"name": f"POS {number}", "role": "pos"}
        if path == "/console/retention/policies":
            from kizuna.storage.retention import KINDS
            return {field: value for kind in KINDS for field, value in
                    ((f"period.{kind.key}", str(kind.period)), (f"unit.{kind.key}", str(kind.unit)), (f"enabled.{kind.key}", "on"))}
        if path == "/console/staff":
            return {"display_name": f"新人 {number}", "email": f"new{number}@example.com", "role": SUPPORT}
        if path.endswith("/role"):
            return {"role": MARKETER if number % 2 else SUPPORT}
        if path.endswith("/assign"):
            return {"assignee_id": str(self.target.id)}
        if path.endswith("/labels"):
            return {"labels": "配送", "priority": "high"}
        if path.endswith("/messages"):
            return {"mode": "note", "text": f"メモ {number}"}
        if path.endswith("/resolve"):
            return {"csat": "on"}
        if path == "/console/friend-sources":
            return {"name": f"チラシ {number}", "tag": ""}
        if path == "/console/segments/{segment_id}/tags":
            return {"bulk_tag": "VIP", "bulk_action": "add"}
        if "/tags" in path:
            return {"tag": "VIP"}
        if path.endswith("/data/correct"):  # a change each time (an unchanged form is refused)
            return {"email": f"corrected{number}@example.com", "channel": "phone"}
        if path.startswith("/console/canned"):
            return {"shortcut": f"s{number}", "title": "タイトル", "text": "本文"}
        if path == "/console/account/password":
            password = member.password if member else PASSWORD
            if member is not None:
                member.password = f"a new passphrase {number}"
            return {"current": password, "new": f"a new passphrase {number}", "again": f"a new passphrase {number}"}
        if path == "/console/account/totp" and member is not None and identity != "admin":
            # the code of the secret being enrolled (started on the enrolment page)
            async with transaction(self.console.sessions) as session:
                staff = await session.get(Staff, member.id)
                staff.totp_secret = staff.totp_enabled_at = staff.totp_last_step = None
                secret = staff_store.begin_totp(staff, self.console.sealer)
            member.totp_secret = secret
            return {"code": pyotp.TOTP(secret).now()}
        return {}

    async def request(self, method: str, path: str, identity: str):
        browser = await self.browser(identity)
        url = await self.path(path)
        if path == "/console/live":  # an endless stream: the status and type are the answer
            async with browser.client.get(browser.base_url + url, allow_redirects=False) as response:
                assert response.status != 200 or response.content_type == "text/event-stream"
            return response
        if method == "GET" and url.endswith(".png"):
            async with browser.client.get(browser.base_url + url, allow_redirects=False) as response:
                await response.read()
        elif method == "GET":
            response, _ = await browser.get(url)
        elif method == "HEAD":
            async with browser.client.head(browser.base_url + url, allow_redirects=False) as response:
                pass
        else:
            page = {"anonymous": "/console/login", "awaiting_totp": "/console/login/totp"}.get(identity, "/console/account")
            token = await browser.csrf(page)
            if path == "/console/coupons/redeem/scan":  # a camera frame: grey bytes, the token in a header
                async with browser.client.post(browser.base_url + url + "?w=4&h=2", data=bytes(8), allow_redirects=False,
                                               headers={"X-CSRF-Token": token}) as response:
                    return response
            if path == "/console/faq/import":  # a file upload
                upload = aiohttp.FormData({"csrf_token": token})
                upload.add_field("file", f"id,question,answer,alternates\nimported-{next(self.counter)},質問,回答,\n".encode(),
                                 filename="faq.csv", content_type="text/csv")
                async with browser.client.post(browser.base_url + url, data=upload, allow_redirects=False) as response:
                    return response
            response, _ = await browser.post(url, await self.form(method, path, identity), csrf=token)
        return response


def expected(rule: frozenset[str] | str, identity: str) -> str:
    """"allowed", "forbidden" or "login" (a redirect to the login page)."""
    if rule == PUBLIC:
        return "allowed"
    if rule == SECOND_FACTOR:
        return "allowed" if identity == "awaiting_totp" else "login"
    if identity in ("anonymous",):
        return "login"
    if identity == "awaiting_totp":
        return "second_factor"
    return "allowed" if ROLE_OF[identity] in rule else "forbidden"


async def test_every_console_route_has_a_row_in_the_matrix(kizuna):
    routes = router_routes(kizuna.server.app)
    assert routes - MATRIX.keys() == set(), "console routes missing from the permission matrix"
    assert MATRIX.keys() - routes == set(), "matrix rows that no console route answers"


async def test_every_route_times_every_identity(console):
    fixtures = Fixtures(console)
    await fixtures.setup()
    routes = router_routes(console.kizuna.server.app)
    assert routes == MATRIX.keys()
    wrong = []
    for (method, path), identity in itertools.product(sorted(routes), IDENTITIES):
        want = expected(MATRIX[(method, path)], identity)
        response = await fixtures.request(method, path, identity)
        location = response.headers.get("Location", "")
        to_login = response.status == 303 and location.startswith("/console/login") and not location.startswith("/console/login/totp")
        if want == "allowed":
            ok = 200 <= response.status < 400 and (
                (method, path) in ENDS_THE_SESSION or not (to_login or location.startswith("/console/account/totp"))
            )
            if path == "/console/login" and identity != "anonymous":
                ok = 200 <= response.status < 400
        elif want == "forbidden":
            ok = response.status == 403
        elif want == "second_factor":
            ok = response.status == 303 and location == "/console/login/totp"
        else:
            ok = to_login
        if not ok:
            wrong.append(f"{method} {path} as {identity}: {response.status} {location} (expected {want})")
    assert not wrong, "\n".join(wrong)
