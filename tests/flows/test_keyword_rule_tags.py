"""A keyword rule that tags (`add_tag`): the customer who sends a matching message through LINE
(the emulator, real HTTP) gets the tag, once; the bot's tagging is on their timeline, not in the
audit log. And `ctx.tag` for flows."""

from __future__ import annotations

import sqlalchemy as sa

from kizuna.bot.keys import SESSIONS
from kizuna.flows.engine import FlowContext
from kizuna.storage import customers, tags
from kizuna.storage.db import transaction
from kizuna.storage.models import AuditEntry
from kizuna.storage.types import utcnow
from tests.flows.test_inquiry import Chat

SALE = {"match_type": "contains", "pattern": "セール情報", "reply_text": "セールは毎月1日からです。", "add_tag": "セール関心"}


async def _tags(kizuna, user_id: str) -> list[str]:
    status, body = await kizuna.api("GET", f"/api/v1/customers/{await kizuna.customer_id(user_id)}/tags")
    assert status == 200, body
    return body["tags"]


async def test_a_matching_message_tags_the_customer(kizuna):
    status, rule = await kizuna.api("POST", "/api/v1/keyword-rules", json=SALE)
    assert status == 201 and rule["add_tag"] == "セール関心", rule

    chat, other = Chat(kizuna.emulator), Chat(kizuna.emulator, name="ほかの人")
    [reply] = await chat.say("セール情報を教えて")
    assert reply["text"] == "セールは毎月1日からです。"
    assert await _tags(kizuna, chat.user_id) == ["セール関心"]
    await other.say("送料はいくら?")  # no match: no tag
    assert await _tags(kizuna, other.user_id) == []

    [reply] = await chat.say("ＳＡＬＥじゃなくてセール情報")  # again: still one tag, one timeline row
    assert await _tags(kizuna, chat.user_id) == ["セール関心"]
    timeline = await kizuna.timeline(chat.user_id)
    tagged = [row for row in timeline if row["kind"] == "customer.tagged"]
    assert [row["payload"] for row in tagged] == [{"tag": "セール関心", "via": "keyword_rule", "rule_id": rule["id"]}]
    kinds = [row["kind"] for row in timeline if row["direction"] == "sys"]
    assert kinds.index("customer.tagged") == kinds.index("inquiry.answered") + 1  # answered, then tagged
    async with kizuna.sessions() as session:  # the bot is no staff member: nothing in the audit log
        edits = (await session.execute(sa.select(AuditEntry).where(AuditEntry.action == "customer.edited"))).scalars().all()
    assert edits == []

    # the tag is a segment condition like any other
    status, body = await kizuna.api("POST", "/api/v1/segments/preview", json={"rule": {"field": "tag", "op": "eq", "value": "セール関心"}})
    assert status == 200 and body["count"] == 1

    # a rule's tag is changed and cleared through the API; a cleared rule tags nobody
    status, body = await kizuna.api("PUT", f"/api/v1/keyword-rules/{rule['id']}", json={"add_tag": None})
    assert status == 200 and body["add_tag"] is None
    third = Chat(kizuna.emulator, name="三人目")
    await third.say("セール情報")
    assert await _tags(kizuna, third.user_id) == []


async def test_a_rule_that_starts_a_flow_tags_too_and_bad_tags_are_refused(kizuna):
    rule = {"match_type": "exact", "pattern": "入会", "flow_action": "register", "add_tag": "  入会希望  "}
    status, body = await kizuna.api("POST", "/api/v1/keyword-rules", json=rule)
    assert status == 201 and body["add_tag"] == "入会希望", body  # normalised as tags are
    chat = Chat(kizuna.emulator)
    await chat.say("入会")
    assert await _tags(kizuna, chat.user_id) == ["入会希望"]
    assert any(row["kind"] == "flow.started" for row in await kizuna.timeline(chat.user_id))

    for bad in ("", "   ", "x" * 41, "a\u0007b", "㍿" * 20):
        status, body = await kizuna.api("POST", "/api/v1/keyword-rules", json={**SALE, "add_tag": bad})
        assert status == 400 and body["error"]["field"] == "add_tag", (bad, body)
        status, body = await kizuna.api("PUT", "/api/v1/keyword-rules/1", json={"add_tag": bad})
        assert status == 400 and body["error"]["field"] == "add_tag", (bad, body)
    assert (await kizuna.api("GET", "/api/v1/keyword-rules/1"))[1]["add_tag"] == "入会希望"


async def test_ctx_tag_in_a_flow(kizuna):
    user_id = kizuna.emulator.add_user(display_name="会員さん", language="ja").user_id
    async with transaction(kizuna.server.app[SESSIONS]) as session:
        customer, _ = await customers.get_or_create(session, user_id, None)
        ctx = FlowContext(session=session, customer=customer, now=utcnow(), replies=[])
        assert await ctx.tag("会員") is True
        assert await ctx.tag("会員") is False  # had it
        assert ctx.updates == [{"type": "customer", "customer_id": customer.id}]
        for n in range(tags.MAX_TAGS_PER_CUSTOMER - 1):
            await tags.add(session, customer.id, f"t{n}", actor=None)
        assert await ctx.tag("もう一つ") is False  # at the limit: the event goes on
    assert "もう一つ" not in await _tags(kizuna, user_id)
    assert [row["payload"] for row in await kizuna.timeline(user_id) if row["kind"] == "customer.tagged"] == [{"tag": "会員"}]
