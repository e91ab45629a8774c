"""1:1チャット and 友だち in the console over real HTTP: the inbox, a conversation beside its
customer (the timeline with LINE's media, the panel), every staff action as a form, canned
responses, customers' search and tags. What a customer wrote is shown as text, never as HTML."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import sqlalchemy as sa

from kizuna.storage import tags
from kizuna.storage.db import transaction
from kizuna.storage.models import Conversation, Customer, Interaction, StaffSession
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.helpers import Console, stored_customer
from tests.flows.test_coupon_command import create_coupon

HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_TEXT = "<script>alert(1)</script>"


async def waiting_customer(console: Console, name: str, *messages: str) -> tuple[str, int, int]:
    """A friend who asked for a person and then wrote `messages`: (LINE user id, customer id, conversation id)."""
    emulator = console.kizuna.emulator
    user = emulator.add_user(display_name=name)
    await emulator.follow(user.user_id)
    await emulator.send_text(user.user_id, "担当者")
    for text in messages:
        await emulator.send_text(user.user_id, text)
    customer_id = await stored_customer(console.kizuna, user.user_id)

    async def stored() -> bool:
        async with console.sessions() as session:
            count = (await session.execute(sa.select(sa.func.count()).where(
                Interaction.customer_id == customer_id, Interaction.direction == "in", Interaction.kind == "message.text"))).scalar_one()
            return count == 1 + len(messages)

    await eventually(stored, what="the customer's messages to be stored")
    async with console.sessions() as session:
        conversation = (await session.execute(sa.select(Conversation).where(Conversation.customer_id == customer_id))).scalar_one()
    await console.kizuna.emulator.wait_for_messages(user.user_id, 1 + 1)  # the greeting and 担当者におつなぎします
    return user.user_id, customer_id, conversation.id


async def test_the_inbox_lists_who_waits_and_escapes_what_they_wrote(console):
    support = await console.add_staff("support@example.com", "support", name="佐藤")
    browser = await console.logged_in(support)
    _user, _customer_id, conversation_id = await waiting_customer(console, HOSTILE_NAME, HOSTILE_TEXT)

    response, page = await browser.get("/console/conversations")
    assert response.status == 200
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and HOSTILE_NAME not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and HOSTILE_TEXT not in page
    assert f'href="/console/conversations/{conversation_id}"' in page
    assert re.search(r'data-count="pending">1<', page) and "(1) 1:1チャット" in page  # the tab's count, in the title too
    assert 'class="inbox-row unanswered"' in page
    _, mine = await browser.get("/console/conversations?tab=mine")
    assert "あなたが担当中のお問い合わせはありません。" in mine
    _, fallback = await browser.get("/console/conversations?tab=nonsense")
    assert f"/console/conversations/{conversation_id}" in fallback  # an unknown tab is the waiting one

    marketer = await console.logged_in(await console.add_staff("mika@example.com", "marketer"))
    for path in ("/console/conversations", f"/console/conversations/{conversation_id}"):
        response, page = await marketer.get(path)
        assert response.status == 403 and "alert(1)" not in page
    _, home = await marketer.get("/console/")  # the home page's counts are everyone's
    assert re.search(r'data-figure="waiting">.*?<div class="tile-value">1</div>', home, re.S)
    assert re.search(r'data-figure="oldest-wait">.*?<div class="tile-value">1分未満</div>', home, re.S)


async def test_two_staff_taking_one_conversation_at_once_one_is_told(console):
    first = await console.logged_in(await console.add_staff("sakura@example.com", "support"))
    second = await console.logged_in(await console.add_staff("kaede@example.com", "support"))
    _user, _customer_id, conversation_id = await waiting_customer(console, "競争 太郎")
    path = f"/console/conversations/{conversation_id}"
    tokens = [await first.csrf(), await second.csrf()]
    answers = await asyncio.gather(first.post(f"{path}/take", csrf=tokens[0]), second.post(f"{path}/take", csrf=tokens[1]))
    assert sorted(response.headers["Location"] for response, _ in answers) == [f"{path}?error=already_taken", f"{path}?notice=taken"]


async def test_a_conversation_shows_the_timeline_with_line_media_and_marks_it_read(console):
    admin = await console.add_staff("owner@example.com", "admin", totp=True)
    browser = await console.logged_in(admin)
    emulator = console.kizuna.emulator
    user_id, customer_id, conversation_id = await waiting_customer(console, "山田 花子", "注文の件です\n2行目")
    await emulator.send_sticker(user_id, package_id="11537", sticker_id="52002734", keywords=["Happy", "OK"])
    await emulator.send_image(user_id)
    await emulator.send_events([emulator.make_event("file", user_id, file_name="見積<書>.pdf", file_size=2048)])
    await emulator.send_location(user_id, title="本店", address="東京都渋谷区1-2-3", latitude=35.66, longitude=139.70)

    async def all_stored() -> bool:
        async with console.sessions() as session:
            return (await session.execute(sa.select(sa.func.count()).where(Interaction.customer_id == customer_id,
                                                                             Interaction.kind == "message.location"))).scalar_one() == 1

    await eventually(all_stored, what="the media messages to be stored")
    async with console.sessions() as session:
        image_id, file_id = [(await session.execute(sa.select(Interaction.id).where(
            Interaction.customer_id == customer_id, Interaction.kind == kind))).scalar_one() for kind in ("message.image", "message.file")]

    response, page = await browser.get(f"/console/conversations/{conversation_id}")
    assert response.status == 200
    assert "注文の件です\n2行目" in page  # as written (the bubble keeps its line breaks)
    assert "1:1チャット開始（「担当者」と送信）" in page  # the conversation's boundary
    assert "パッケージ 11537 / スタンプ 52002734" in page and ">Happy<" in page  # the sticker's honest card
    assert f'<img class="media-image" src="/console/media/{image_id}"' in page
    assert "見積&lt;書&gt;.pdf" in page and "2.0 KB" in page
    assert "本店" in page and "東京都渋谷区1-2-3" in page and "https://www.google.com/maps/search/?api=1&amp;query=35.66,139.7" in page
    assert "担当者におつなぎします。" in page  # the bot's reply, on the shop's side
    # Opening it marks the customer's chat read on LINE (in the background, best effort).
    await eventually(lambda: _is(len(emulator.read_marks) == 1), what="LINE's read mark")
    assert emulator.read_marks[0][0] == user_id

    response, image = await browser.get(f"/console/media/{image_id}")
    assert response.status == 200 and response.content_type == "image/png"
    assert response.headers["Content-Disposition"] == "inline" and "sandbox" in response.headers["Content-Security-Policy"]
    response, _ = await browser.get(f"/console/media/{file_id}")
    assert response.content_type == "application/octet-stream"  # a file is a download, never rendered
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D%3C%E6%9B%B8%3E.pdf"
    response, _ = await browser.get("/console/media/999999")
    assert response.status == 404

    # A live refresh of the page is not someone opening it: no read mark for a new message.
    await emulator.send_text(user_id, "もう一つ")
    await eventually(lambda: _text_stored(console, "もう一つ"), what="the message to be stored")
    await browser.get(f"/console/conversations/{conversation_id}", headers={"X-Kizuna-Refresh": "1"})
    await browser.get(f"/console/conversations/{conversation_id}")
    await eventually(lambda: _is(len(emulator.read_marks) == 2), what="the second read mark")
    assert len(emulator.requests_to("mark_as_read")) == 2


async def test_requests_a_page_makes_by_itself_do_not_keep_its_session_alive(console):
    browser = await console.logged_in(await console.add_staff("support@example.com", "support"))
    earlier = utcnow() - timedelta(minutes=10)
    await console.execute(sa.update(StaffSession).values(last_seen_at=earlier))
    response, _ = await browser.get("/console/conversations", headers={"X-Kizuna-Refresh": "1"})
    assert response.status == 200
    assert await _last_seen(console) == [earlier]
    await browser.get("/console/conversations")
    assert (await _last_seen(console))[0] > earlier


async def _is(value: bool) -> bool:
    return value


async def _text_stored(console: Console, text: str) -> bool:
    async with console.sessions() as session:
        return (await session.execute(sa.select(sa.func.count()).where(Interaction.text == text))).scalar_one() > 0


async def _last_seen(console: Console) -> list:
    async with console.sessions() as session:
        return list((await session.execute(sa.select(StaffSession.last_seen_at))).scalars())


async def test_take_reply_note_and_resolve_from_the_console(console):
    sakura = await console.add_staff("sakura@example.com", "support", name="さくら")
    kaede = await console.add_staff("kaede@example.com", "support", name="かえで")
    first, second = await console.logged_in(sakura), await console.logged_in(kaede)
    emulator = console.kizuna.emulator
    user_id, _customer_id, conversation_id = await waiting_customer(console, "相談 花子", "届いていません")
    path = f"/console/conversations/{conversation_id}"
    sent_before = len(emulator.messages_to(user_id))

    response, _ = await first.post(f"{path}/take")
    assert response.status == 303 and response.headers["Location"] == f"{path}?notice=taken"
    response, _ = await second.post(f"{path}/take")  # one at a time here; the race is tested in flows/
    assert response.headers["Location"] == f"{path}?error=already_taken"
    _, page = await second.get(response.headers["Location"])
    assert "ほかのスタッフが先にこのお問い合わせを担当しました。" in page and "担当: さくら" in page

    response, _ = await first.post(f"{path}/messages", {"mode": "reply", "text": "お待たせしました。確認します。"})
    assert response.headers["Location"] == f"{path}?notice=replied#conversation"
    delivered = (await emulator.wait_for_messages(user_id, sent_before + 1))[-1]
    assert (delivered.via, delivered.message["text"]) == ("push", "お待たせしました。確認します。") and delivered.retry_key
    response, _ = await first.post(f"{path}/messages", {"mode": "note", "text": "倉庫に確認中 <b>急ぎ</b>"})
    assert response.headers["Location"] == f"{path}?notice=noted#conversation"
    _, page = await first.get(path)
    assert "倉庫に確認中 &lt;b&gt;急ぎ&lt;/b&gt;" in page and "メモ（お客様には表示されません）" in page
    assert len(emulator.messages_to(user_id)) == sent_before + 1  # the note was never sent

    response, page = await first.post(f"{path}/messages", {"mode": "reply", "text": "   "})
    assert response.status == 400 and "メッセージは1〜5,000文字で入力してください。" in page
    long = "あ" * 5001
    response, page = await first.post(f"{path}/messages", {"mode": "reply", "text": long})
    assert response.status == 400 and long in page  # the draft is kept

    response, _ = await first.post(f"{path}/assign", {"assignee_id": str(kaede.id)})
    assert response.headers["Location"] == f"{path}?notice=assigned"
    marketer = await console.add_staff("mika@example.com", "marketer")
    response, _ = await first.post(f"{path}/assign", {"assignee_id": str(marketer.id)})
    assert response.headers["Location"] == f"{path}?error=assignee_invalid"
    response, _ = await first.post(f"{path}/labels", {"labels": "配送、返品, 配送", "priority": "urgent"})
    assert response.headers["Location"] == f"{path}?notice=labels_saved"
    async with console.sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
    assert (conversation.assignee_id, conversation.labels, conversation.priority) == (kaede.id, ["配送", "返品"], "urgent")

    response, _ = await second.post(f"{path}/resolve", {"csat": "on"})
    assert response.headers["Location"] == f"{path}?notice=resolved"
    csat = (await emulator.wait_for_messages(user_id, sent_before + 2))[-1].message
    assert csat["text"].startswith("今回の対応はいかがでしたか")
    await emulator.send_postback(user_id, csat["quickReply"]["items"][0]["action"]["data"])
    await eventually(lambda: _rated(console, conversation_id), what="the rating to be recorded")
    _, page = await second.get(path)
    assert "満足度: 5 / 5" in page and "解決済みです。お客様がもう一度担当者を希望すると再開します。" in page
    assert "満足度 ★★★★★（5）" in page  # the customer's tap, in the timeline
    response, _ = await second.post(f"{path}/messages", {"mode": "reply", "text": "まだいますか"})
    assert response.status == 409  # resolved: nothing is sent any more
    _, resolved = await second.get("/console/conversations?tab=resolved")
    assert f"/console/conversations/{conversation_id}" in resolved and "満足度 5" in resolved


async def _rated(console: Console, conversation_id: int) -> bool:
    async with console.sessions() as session:
        return (await session.get(Conversation, conversation_id, populate_existing=True)).csat_score == 5


async def test_canned_responses_coupons_and_faq_answers_from_the_composer(console):
    admin = await console.add_staff("owner@example.com", "admin", totp=True)
    browser = await console.logged_in(admin)
    emulator = console.kizuna.emulator
    user_id, customer_id, conversation_id = await waiting_customer(console, "山田 花子")
    path = f"/console/conversations/{conversation_id}"

    response, _ = await browser.post("/console/canned", {"shortcut": "thanks", "title": "お礼", "text": "{name}様、ありがとうございます。"})
    assert response.headers["Location"] == "/console/canned?notice=canned_created"
    response, page = await browser.post("/console/canned", {"shortcut": "thanks", "title": "重複", "text": "x"})
    assert response.status == 400 and "このショートカットはすでに使われています。" in page and 'value="重複"' in page
    _, page = await browser.get("/console/canned")
    [canned_id] = re.findall(r'action="/console/canned/(\d+)"', page)
    response, _ = await browser.post(f"/console/canned/{canned_id}", {"shortcut": "thanks", "title": "お礼", "text": "{name}様、ご連絡ありがとうございます。"})
    assert response.headers["Location"] == "/console/canned?notice=canned_updated"

    _, page = await browser.get(path)
    assert f'<option value="{canned_id}" data-text="山田 花子様、ご連絡ありがとうございます。">/thanks — お礼</option>' in page
    before = len(emulator.messages_to(user_id))
    response, _ = await browser.post(f"{path}/messages", {"mode": "reply", "text": "", "canned_id": canned_id})  # (without JS)
    assert response.headers["Location"] == f"{path}?notice=replied#conversation"
    assert (await emulator.wait_for_messages(user_id, before + 1))[-1].message["text"] == "山田 花子様、ご連絡ありがとうございます。"

    coupon = await create_coupon(console.kizuna, title="おわび500円OFF")
    _, page = await browser.get(path)
    assert f'<option value="{coupon["id"]}">おわび500円OFF（500円OFF）</option>' in page
    response, _ = await browser.post(f"{path}/coupon", {"coupon_id": str(coupon["id"])})
    assert response.headers["Location"] == f"{path}?notice=coupon_sent#conversation"
    flex = (await emulator.wait_for_messages(user_id, before + 2))[-1].message
    assert flex["type"] == "flex" and "おわび500円OFF" in flex["altText"]
    response, _ = await browser.post(f"{path}/coupon", {"coupon_id": str(coupon["id"])})
    assert response.headers["Location"] == f"{path}?notice=coupon_resent#conversation"
    response, _ = await browser.post(f"{path}/coupon", {"coupon_id": "999999"})
    assert response.headers["Location"] == f"{path}?error=not_found#conversation"
    _, page = await browser.get(path)
    assert "おわび500円OFF" in page and "利用可能" in page  # the panel's coupons
    [granted] = [entry for entry in await console.audit("coupon.granted")]
    assert granted.actor == "owner@example.com" and granted.target.startswith(f"customer:{customer_id}")

    async with transaction(console.sessions) as session:
        from kizuna.storage import faq as faq_store
        await faq_store.create_entry(session, faq_store.FaqFields(id="shipping", question="送料はいくら?", answer="全国一律550円です。"))
        await faq_store.create_entry(session, faq_store.FaqFields(id="hours", question="営業時間は?", answer="10時から19時です。"))
    _, page = await browser.get(f"{path}?faq_q=送料")
    assert "送料はいくら?" in page and "営業時間は?" not in page
    response, _ = await browser.post(f"{path}/faq", {"faq_id": "shipping"})
    assert response.headers["Location"] == f"{path}?notice=faq_sent#conversation"
    assert (await emulator.wait_for_messages(user_id, before + 4))[-1].message["text"] == "全国一律550円です。"

    response, _ = await browser.post(f"/console/canned/{canned_id}/delete")
    assert response.headers["Location"] == "/console/canned?notice=canned_deleted"
    assert [entry.details["change"] for entry in await console.audit("settings.changed")] == ["created", "updated", "deleted"]


async def test_friends_are_searched_paged_and_tagged(console):
    support = await console.logged_in(await console.add_staff("support@example.com", "support"))
    marketer_member = await console.add_staff("mika@example.com", "marketer")
    marketer = await console.logged_in(marketer_member)
    async with transaction(console.sessions) as session:
        for number in range(55):
            session.add(Customer(line_user_id=f"U{number:032x}", display_name=f"客 {number}", followed=True))
        session.add(Customer(line_user_id="U" + "f" * 32, display_name=HOSTILE_NAME, full_name="山田 花子", registered=True,
                             phone="+819012345678", email="hanako@example.jp", followed=True))
    _, page = await support.get("/console/customers")
    assert "56人" in page and "&lt;img src=x onerror=alert(1)&gt;" in page and HOSTILE_NAME not in page
    [older] = re.findall(r'href="(/console/customers\?before=\d+)"', page)
    _, rest = await support.get(older)
    assert "客 0<" in rest and "客 10<" not in rest
    for query in ("山田花子", "090-1234-5678", "HANAKO@example", "U" + "f" * 32):
        _, found = await support.get(f"/console/customers?q={query}")
        assert "1人" in found and "山田 花子" in found, query
    _, none = await support.get("/console/customers?q=いない人")
    assert "該当する友だちはいません。" in none

    async with console.sessions() as session:
        hanako = (await session.execute(sa.select(Customer).where(Customer.full_name == "山田 花子"))).scalar_one()
    page_path = f"/console/customers/{hanako.id}"
    response, _ = await marketer.post(f"{page_path}/tags", {"tag": "ＶＩＰ", "next": page_path})
    assert response.headers["Location"] == f"{page_path}?notice=tag_added#tags"
    response, _ = await marketer.post(f"{page_path}/tags", {"tag": "x" * 41, "next": page_path})
    assert response.headers["Location"] == f"{page_path}?error=tag_invalid#tags"
    response, _ = await marketer.post(f"{page_path}/tags", {"tag": "VIP", "next": "https://evil.example/"})
    assert response.headers["Location"] == f"{page_path}?notice=unchanged#tags"  # never another site
    _, page = await marketer.get(page_path)
    assert "VIP" in page and "090" not in page and "+819012345678" in page
    assert "トーク履歴はサポート担当者と管理者だけが見られます。" in page  # marketers see the panel, not the chats
    _, listed = await support.get("/console/customers?q=山田")
    assert '<span class="tag">VIP</span>' in listed
    response, _ = await support.post(f"{page_path}/tags/remove", {"tag": "VIP", "next": page_path})
    assert response.headers["Location"] == f"{page_path}?notice=tag_removed#tags"
    async with console.sessions() as session:
        assert await tags.of_customer(session, hanako.id) == []
    edits = await console.audit("customer.edited")
    assert [(entry.actor, entry.details) for entry in edits] == [("mika@example.com", {"tag_added": "VIP"}),
                                                                 ("support@example.com", {"tag_removed": "VIP"})]
    response, _ = await support.get("/console/customers/999999")
    assert response.status == 404


async def test_a_customer_known_only_from_an_order_shows_without_a_line_id(console):
    from kizuna.storage import orders
    from kizuna.storage.models import OrderCreate

    support = await console.logged_in(await console.add_staff("support@example.com", "support"))
    async with transaction(console.sessions) as session:
        await orders.upsert(session, [OrderCreate.model_validate(
            {"external_id": "EC-1", "ordered_at": "2026-12-01T10:30:00+09:00", "total": 3300, "email": "ec@example.com"})],
            now=utcnow(), source="test")
        customer = (await session.execute(sa.select(Customer))).scalar_one()
    response, page = await support.get(f"/console/customers/{customer.id}")
    assert response.status == 200
    assert ">None<" not in page and "line-id-" not in page
