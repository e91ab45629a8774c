"""Staff's further actions on a conversation, through the SupportDesk the console and the REST
API call: a coupon (issued by staff's path, audited, sent as the bot's Flex), an FAQ answer,
canned responses with `{name}`, LINE's read mark, the customer's tags, labels, assigning,
and the media a customer sent. Real HTTP through the emulator."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from kizuna.appkeys import SERVICES
from kizuna.flows.coupons import coupon_flex
from kizuna.storage import canned, conversations, customers, tags
from kizuna.storage import faq as faq_store
from kizuna.storage import staff as staff_store
from kizuna.storage.audit import CLI, Actor
from kizuna.storage.db import transaction
from kizuna.storage.errors import Conflict, Invalid, NotFound
from kizuna.storage.models import AuditEntry, Customer, Delivery, DeliveryKind, Interaction, MediaContent
from tests.conftest import eventually
from tests.flows.test_coupon_command import create_coupon
from tests.flows.test_registration import Chat


async def _staff(kizuna, email: str, role: str = "support") -> Actor:
    new = await staff_store.prepare(email=email, display_name=email.split("@")[0], role=role, password="correct horse battery")
    async with transaction(kizuna.sessions) as session:
        member = await staff_store.create(session, new, actor=CLI)
    return Actor(member.email, member.id)


async def _waiting(kizuna, name: str):
    """A customer who asked for a person: (user, chat, conversation)."""
    user = kizuna.emulator.add_user(display_name=name)
    await kizuna.emulator.follow(user.user_id)
    await kizuna.emulator.wait_for_messages(user.user_id, 1)
    chat = Chat(kizuna.emulator, user.user_id)
    await chat.say("担当者")
    customer_id = await kizuna.customer_id(user.user_id)
    async with kizuna.sessions() as session:
        conversation = await conversations.active_for(session, customer_id)
    return user, chat, conversation


def _desk(kizuna):
    return kizuna.server.app[SERVICES].support


async def _audit(kizuna, action: str) -> list[AuditEntry]:
    async with kizuna.sessions() as session:
        return list((await session.execute(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))).scalars())


async def test_a_coupon_sent_from_a_conversation_is_granted_audited_and_shown_as_the_bot_shows_it(kizuna):
    user, _chat, conversation = await _waiting(kizuna, "クーポン 花子")
    sakura = await _staff(kizuna, "sakura@example.jp")
    coupon = await create_coupon(kizuna, title="おわび500円OFF")

    sent = await _desk(kizuna).send_coupon(conversation.id, sakura, coupon["id"])
    assert sent.created
    delivered = (await kizuna.emulator.wait_for_messages(user.user_id, 3))[-1]
    assert delivered.via == "push" and delivered.retry_key
    expected = coupon_flex(sent.grant, sent.coupon, public_url=kizuna.settings.base_url, locale="ja")
    async with kizuna.sessions() as session:
        stored = (await session.execute(sa.select(Interaction).where(Interaction.kind == "message.flex").order_by(Interaction.id.desc()))).scalars().first()
    assert stored.payload == expected and stored.sender_type == "staff"  # the bot's own builder, not a second one
    assert delivered.message["altText"] == expected["altText"] and sent.grant.code in str(delivered.message)
    [entry] = await _audit(kizuna, "coupon.granted")
    assert entry.actor == "sakura@example.jp" and entry.details["code"] == sent.grant.code
    assert entry.target.startswith(f"customer:{conversation.customer_id}")

    again = await _desk(kizuna).send_coupon(conversation.id, sakura, coupon["id"])  # one per customer: sent again
    assert not again.created and again.grant.id == sent.grant.id
    await kizuna.emulator.wait_for_messages(user.user_id, 4)
    assert len(await _audit(kizuna, "coupon.granted")) == 1  # one grant, one entry

    ended = await create_coupon(kizuna, title="終了", active=False)
    with pytest.raises(Conflict) as refused:
        await _desk(kizuna).send_coupon(conversation.id, sakura, ended["id"])
    assert refused.value.code == "inactive"
    async with kizuna.sessions() as session:
        stored = await conversations.get(session, conversation.id)
    assert (stored.status, stored.assignee_id) == ("open", sakura.staff_id)  # sending took it


async def test_an_faq_answer_is_sent_as_stored(kizuna):
    user, _chat, conversation = await _waiting(kizuna, "質問 次郎")
    async with transaction(kizuna.sessions) as session:
        await faq_store.create_entry(session, faq_store.FaqFields(id="shipping", question="送料は?", answer="送料は全国一律550円です。\n5,000円以上で無料です。"))
        await faq_store.create_entry(session, faq_store.FaqFields(id="off", question="古い", answer="古い答え", enabled=False))
    sakura = await _staff(kizuna, "sakura@example.jp")
    interaction = await _desk(kizuna).send_faq_answer(conversation.id, sakura, "shipping")
    assert interaction.text == "送料は全国一律550円です。\n5,000円以上で無料です。"
    delivered = (await kizuna.emulator.wait_for_messages(user.user_id, 3))[-1]
    assert (delivered.via, delivered.message["text"]) == ("push", interaction.text)
    for missing in ("off", "nothing"):
        with pytest.raises(NotFound):
            await _desk(kizuna).send_faq_answer(conversation.id, sakura, missing)


async def test_canned_responses_fill_the_name_safely(kizuna):
    user, _chat, conversation = await _waiting(kizuna, "山田 {name} 花子")
    admin = await _staff(kizuna, "owner@example.jp", role="admin")
    async with transaction(kizuna.sessions) as session:
        thanks = await canned.create(session, shortcut="/thanks", title="お礼", text="{name}様、お問い合わせありがとうございます。{0.__class__}", actor=admin)
        with pytest.raises(Conflict):
            await canned.create(session, shortcut="thanks", title="重複", text="x", actor=admin)
        with pytest.raises(Invalid) as bad:
            await canned.create(session, shortcut="two words", title="x", text="x", actor=admin)
        assert bad.value.field == "shortcut"
    assert thanks.shortcut == "thanks"
    sakura = await _staff(kizuna, "sakura@example.jp")
    sent = await _desk(kizuna).reply_canned(conversation.id, sakura, thanks.id)
    # the name is put in once, literally (its own "{name}" is not filled again; no format fields)
    assert sent.text == "山田 {name} 花子様、お問い合わせありがとうございます。{0.__class__}"
    assert (await kizuna.emulator.wait_for_messages(user.user_id, 3))[-1].message["text"] == sent.text
    assert [entry.details["change"] for entry in await _audit(kizuna, "settings.changed")] == ["created"]

    nameless = Customer(line_user_id="U" + "0" * 32, display_name="  ", language="ja")
    assert canned.fill("{name}様、こんにちは。{name}さん", nameless) == "お客様、こんにちは。お客様"
    assert canned.fill("Hi {name},", Customer(line_user_id="U" + "1" * 32, language="en")) == "Hi there,"
    registered = Customer(line_user_id="U" + "2" * 32, display_name="はなちゃん🌸", registered=True, full_name="山田 花子")
    assert canned.fill("{name}様", registered) == "山田 花子様"


async def test_opening_a_conversation_marks_the_chat_read_on_line_once_per_message(kizuna):
    user, chat, conversation = await _waiting(kizuna, "既読 三郎")
    desk = _desk(kizuna)
    await kizuna.emulator.send_text(user.user_id, "注文の件です")

    async def latest_text_recorded() -> bool:
        async with kizuna.sessions() as session:
            return (await session.execute(sa.select(sa.func.count()).where(Interaction.text == "注文の件です"))).scalar_one() == 1

    await eventually(latest_text_recorded, what="the message to be stored")
    assert await desk.mark_read(conversation.id)
    await eventually(lambda: _true(len(kizuna.emulator.read_marks) == 1), what="LINE to get the read mark")
    assert kizuna.emulator.read_marks[0][0] == user.user_id
    results = await asyncio.gather(desk.mark_read(conversation.id), desk.mark_read(conversation.id))
    assert results == [False, False]  # that message is marked already
    async with kizuna.sessions() as session:
        marks = list((await session.execute(sa.select(Delivery).where(Delivery.kind == DeliveryKind.MARK_READ))).scalars())
    assert len(marks) == 1 and marks[0].sender_type == "staff"
    await eventually(lambda: _delivery_status(kizuna, marks[0].id, "sent"), what="the mark to be recorded as sent")

    # LINE refusing the token (used elsewhere, say) is recorded, not retried
    await kizuna.emulator.send_text(user.user_id, "もう一つ")
    await eventually(lambda: _count_text(kizuna, "もう一つ"), what="the second message to be stored")
    kizuna.emulator.fail_next("mark_as_read", status=400)
    assert await desk.mark_read(conversation.id)
    async with kizuna.sessions() as session:
        second = (await session.execute(sa.select(Delivery.id).where(Delivery.kind == DeliveryKind.MARK_READ).order_by(Delivery.id.desc()))).scalars().first()
    await eventually(lambda: _delivery_status(kizuna, second, "failed"), what="the refused mark to be recorded")


async def _true(value: bool) -> bool:
    return value


async def _count_text(kizuna, text: str) -> bool:
    async with kizuna.sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).where(Interaction.text == text))).scalar_one() >= 1


async def _delivery_status(kizuna, delivery_id: int, status: str) -> bool:
    async with kizuna.sessions() as session:
        return (await session.get(Delivery, delivery_id, populate_existing=True)).status == status


async def test_tags_are_normalised_audited_and_published(kizuna):
    _user, _chat, conversation = await _waiting(kizuna, "タグ 四郎")
    sakura = await _staff(kizuna, "sakura@example.jp")
    desk = _desk(kizuna)
    async with kizuna.server.app[SERVICES].broadcaster.subscribe() as updates:
        assert await desk.add_tag(conversation.customer_id, sakura, "  ＶＩＰ  顧客 ")
        async with asyncio.timeout(5):
            assert await anext(updates) == {"type": "customer", "customer_id": conversation.customer_id}
    assert not await desk.add_tag(conversation.customer_id, sakura, "VIP 顧客")  # the same tag
    assert await desk.add_tag(conversation.customer_id, sakura, "リピーター")
    for bad in ("", "x" * 41, "bell\x07", "zero\u200bwidth"):
        with pytest.raises(Invalid):
            await desk.add_tag(conversation.customer_id, sakura, bad)
    with pytest.raises(NotFound):
        await desk.add_tag(999_999, sakura, "VIP")
    assert await desk.remove_tag(conversation.customer_id, sakura, "VIP 顧客")
    assert not await desk.remove_tag(conversation.customer_id, sakura, "VIP 顧客")
    async with kizuna.sessions() as session:
        assert await tags.of_customer(session, conversation.customer_id) == ["リピーター"]
        assert await tags.known(session) == ["リピーター"]
    edits = [entry.details for entry in await _audit(kizuna, "customer.edited")]
    assert edits == [{"tag_added": "VIP 顧客"}, {"tag_added": "リピーター"}, {"tag_removed": "VIP 顧客"}]


async def test_assigning_labels_and_the_inbox_tabs(kizuna):
    _u1, _c1, first = await _waiting(kizuna, "一番 花子")
    _u2, _c2, second = await _waiting(kizuna, "二番 次郎")
    sakura, kaede = await _staff(kizuna, "sakura@example.jp"), await _staff(kizuna, "kaede@example.jp")
    marketer = await _staff(kizuna, "mika@example.jp", role="marketer")
    desk = _desk(kizuna)
    with pytest.raises(Invalid):
        await desk.assign(first.id, marketer.staff_id)  # marketers never answer conversations
    await desk.assign(first.id, kaede.staff_id)
    await desk.label(second.id, ["配送", "配送", " 返品 "], "urgent")
    with pytest.raises(Invalid):
        await desk.label(second.id, [], "asap")
    await desk.reply(second.id, sakura, "確認します")

    async with kizuna.sessions() as session:
        pending = await conversations.inbox(session, tab=conversations.Tab.PENDING, staff_id=sakura.staff_id, limit=10)
        mine = await conversations.inbox(session, tab=conversations.Tab.MINE, staff_id=sakura.staff_id, limit=10)
        everything = await conversations.inbox(session, tab=conversations.Tab.ALL, staff_id=sakura.staff_id, limit=10)
        counts = await conversations.tab_counts(session, sakura.staff_id)
    assert pending == []
    assert [row.conversation.id for row in mine] == [second.id]
    assert [row.conversation.id for row in everything] == [second.id, first.id]  # urgent first
    assert everything[0].conversation.labels == ["配送", "返品"] and not everything[0].unanswered
    assert everything[0].last_message.text == "確認します"
    assert everything[1].unanswered and everything[1].customer.display_name == "一番 花子"
    assert counts == {conversations.Tab.PENDING: 0, conversations.Tab.MINE: 1, conversations.Tab.ALL: 2}

    await desk.resolve(second.id, sakura, ask_csat=False)
    async with kizuna.sessions() as session:
        resolved = await conversations.inbox(session, tab=conversations.Tab.RESOLVED, staff_id=sakura.staff_id, limit=10)
    assert [row.conversation.id for row in resolved] == [second.id]


async def test_customers_are_found_by_name_phone_email_and_line_id(kizuna):
    async with transaction(kizuna.sessions) as session:
        for index, (name, full, phone, email) in enumerate((
            ("はなこ", "山田 花子", "+819012345678", "hanako@example.jp"),
            ("Ken_100%", None, None, "KEN@Example.com"),
            ("田中", "田中 一郎", "+81312345678", None),
        )):
            session.add(Customer(line_user_id=f"U{index:032x}", display_name=name, full_name=full, phone=phone, email=email, registered=full is not None))

    async def found(query: str) -> list[str]:
        async with kizuna.sessions() as session:
            return [customer.display_name for customer in await customers.search(session, query, limit=10)]

    assert await found("山田花子") == ["はなこ"]  # the registered name, spaces ignored
    assert await found("090-1234-5678") == ["はなこ"]
    assert await found("ken@example") == ["Ken_100%"]
    assert await found("100%") == ["Ken_100%"]
    assert await found("_") == ["Ken_100%"]  # LIKE's wildcards are literal
    assert await found("U" + "2".rjust(32, "0")) == ["田中"]
    assert await found("") == ["田中", "Ken_100%", "はなこ"]  # newest first
    async with kizuna.sessions() as session:
        first_page = await customers.search(session, None, limit=2)
        rest = await customers.search(session, None, limit=2, before_id=first_page[-1].id)
        assert [c.display_name for c in rest] == ["はなこ"]
        assert await customers.count_matching(session, "田中") == 1


async def test_media_a_customer_sent_is_fetched_from_line_once_and_kept(kizuna):
    user, _chat, _conversation = await _waiting(kizuna, "写真 五郎")
    await kizuna.emulator.send_image(user.user_id)
    await kizuna.emulator.send_events([kizuna.emulator.make_event("file", user.user_id, file_name="見積書.pdf")])
    await kizuna.emulator.send_location(user.user_id)

    async def rows() -> list[Interaction]:
        async with kizuna.sessions() as session:
            return list((await session.execute(sa.select(Interaction).where(
                Interaction.kind.in_(("message.image", "message.file", "message.location"))).order_by(Interaction.id))).scalars())

    await eventually(lambda: _has(rows, 3), what="the media messages to be stored")
    image, document, location = await rows()
    library = kizuna.server.app[SERVICES].media
    shown = await library.content(image.id)
    assert shown.content_type == "image/png" and shown.data.startswith(b"\x89PNG") and shown.kind == "image"
    fetched = len(kizuna.emulator.requests_to("content"))
    assert (await library.content(image.id)).data == shown.data
    assert len(kizuna.emulator.requests_to("content")) == fetched  # the second look reads the copy
    assert (await library.content(document.id)).file_name == "見積書.pdf"
    async with kizuna.sessions() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(MediaContent))).scalar_one() == 2
    for nothing in (location.id, 999_999):
        with pytest.raises(NotFound):
            await library.content(nothing)


async def _has(rows, count: int) -> bool:
    return len(await rows()) >= count
