"""Withdrawal (退会) and the consent ledger, end to end through the emulator: what the customer
receives, what is stored, what the campaigns and the rich menu do afterwards. Same tests on
SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import sqlalchemy as sa

from kizuna.bot import richmenu
from kizuna.bot.keys import LINE
from kizuna.flows.engine import step_data
from kizuna.storage import consents
from kizuna.storage.db import transaction
from kizuna.storage.models import ConsentRecord, CustomerIdentity, GrantStatus, PrivacyNotice, SequenceEnrolment
from kizuna.storage.types import utcnow
from tests.campaigns.test_campaigns import FOLLOWERS, campaign_texts, wait_for_status
from tests.conftest import eventually
from tests.flows.test_inquiry import ANSWERS, import_faq
from tests.flows.test_registration import (
    Chat, customer_row, flex_buttons, flex_texts, grants_of, make_registered, quick_actions, quick_labels, registration_coupon,
    walk_to,
)

YES = step_data("withdrawal.confirm", "yes")
NO = step_data("withdrawal.confirm", "no")
DONE = "退会のお手続きが完了しました。"
NOT_MEMBER = "会員登録はされていないため、退会のお手続きは不要です。"


async def ledger(kizuna, customer_id: int) -> list[tuple[str, str, str | None, str]]:
    """(purpose, action, notice version, channel), oldest first."""
    async with kizuna.sessions() as session:
        rows = await consents.history(session, customer_id)
    return [(row.purpose, row.action, row.notice_version, row.channel) for row in reversed(rows)]


async def register_in_chat(kizuna, chat: Chat, *, expect: int) -> list[dict]:
    await walk_to(chat, "registration.confirm")
    return await chat.say("登録する", expect=expect)


async def test_a_member_withdraws_and_is_left_out_of_campaigns_at_once(kizuna):
    await registration_coupon(kizuna)
    menus = await richmenu.setup(kizuna.server.app[LINE])
    status, sequence = await kizuna.api("POST", "/api/v1/sequences", json={
        "name": "会員フォロー", "trigger": "registered",
        "steps": [{"delay_days": 3, "delay_from": "enrolment", "messages": [{"type": "text", "text": "お手入れのコツ"}]}]})
    assert status == 201, sequence
    user = kizuna.emulator.add_user(display_name="山田 花子")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    await register_in_chat(kizuna, chat, expect=3)  # done, the coupon's intro, the coupon
    member_menu = menus.menu("registered").rich_menu_id

    async def menu_is(menu_id) -> bool:
        linked = kizuna.emulator.rich_menu_for(user.user_id)
        return (linked.rich_menu_id if linked else None) == menu_id

    await eventually(lambda: menu_is(member_menu), what="the member menu linked")
    customer = await customer_row(kizuna, user.user_id)

    # The member info card offers 退会する.
    [card] = await chat.tap("action=member_info")
    assert {"type": "postback", "label": "退会する", "data": "action=withdraw", "displayText": "退会する"} in flex_buttons(card)

    [explain] = await chat.say("退会")
    assert "お持ちのクーポン（1枚）は使えなくなります。" in explain["text"]
    assert "お知らせの配信が止まります。" in explain["text"] and "すぐに削除します" in explain["text"]
    assert "会員登録特典クーポンはお送りできません" in explain["text"]
    assert quick_labels(explain) == ["退会する", "退会しない"]
    assert (await customer_row(kizuna, user.user_id)).registered is True  # nothing before the confirmation

    [done] = await chat.tap(YES)
    assert done["text"].startswith(DONE)

    stored = await customer_row(kizuna, user.user_id)
    assert stored.registered is False and stored.withdrawn_at is not None and stored.marketing_opt_in is False
    assert (stored.full_name, stored.birthday, stored.gender, stored.prefecture, stored.phone, stored.email) == (None,) * 6
    assert stored.display_name == "山田 花子"  # LINE's profile stays
    [grant] = await grants_of(kizuna, customer.id)
    assert grant.status == GrantStatus.REVOKED
    async with kizuna.sessions() as session:
        [enrolment] = (await session.execute(sa.select(SequenceEnrolment).where(SequenceEnrolment.customer_id == customer.id))).scalars()
        kinds = set((await session.execute(
            sa.select(CustomerIdentity.kind).where(CustomerIdentity.customer_id == customer.id))).scalars())
    assert (enrolment.status, enrolment.exit_reason) == ("exited", "withdrawn")
    assert kinds == {"line_user_id"}  # the e-mail and phone given at registration recognise nobody now
    assert await ledger(kizuna, customer.id) == [
        ("membership", "granted", "1", "line_chat"), ("analytics", "granted", "1", "line_chat"),
        ("marketing", "granted", "1", "line_chat"),
        ("membership", "withdrawn", "1", "line_chat"), ("marketing", "withdrawn", "1", "line_chat"),
        ("analytics", "withdrawn", "1", "line_chat"),
    ]
    timeline = await kizuna.timeline(user.user_id)
    withdrawn = next(row for row in timeline if row["kind"] == "withdrawn")
    assert withdrawn["payload"] == {"data": "deleted", "cleared": ["full_name", "birthday", "gender", "prefecture", "phone", "email"],
                                    "coupons_revoked": 1, "sequences_exited": 1}
    assert "coupon.revoked" in [row["kind"] for row in timeline]
    # The member menu is unlinked: LINE shows the channel's default menu.
    await eventually(lambda: menu_is(menus.menu("default").rich_menu_id), what="the default menu after withdrawing")

    # A campaign to every follower now leaves them out.
    other = kizuna.emulator.add_user(display_name="友だち")
    await Chat(kizuna.emulator, other.user_id)._replies(kizuna.emulator.follow(other.user_id), 1)
    status, campaign = await kizuna.api("POST", "/api/v1/campaigns", json={
        "name": "冬のセール", "rule": FOLLOWERS, "messages": [{"type": "text", "text": "冬のセール開催中！"}], "quiet_hours": False})
    assert status == 201, campaign
    finished = await wait_for_status(kizuna, campaign["id"], "completed")
    assert campaign_texts(kizuna, user) == [] and campaign_texts(kizuna, other) == ["冬のセール開催中！"]
    assert finished["stats"]["excluded"]["opted_out"] == 1

    # An old 退会する button, and 会員情報, now say the right thing.
    [stale] = await chat.tap(YES)
    assert stale["text"].startswith("こちらのボタンは受付を終了しました。会員ではないため")
    [invite] = await chat.say("会員情報")
    assert invite["text"].startswith("まだ会員登録がお済みではありません。会員登録は")  # no sign-up coupon promised again


async def test_typed_yes_and_a_second_typed_withdraw_confirm(kizuna):
    chat, customer = await make_registered(kizuna, kizuna.emulator)
    [explain] = await chat.say("退会する")
    assert explain["text"].startswith("退会すると、次のようになります。")
    [done] = await chat.say("はい")
    assert done["text"].startswith(DONE)
    assert (await customer_row(kizuna, chat.user_id)).registered is False

    chat2, _ = await make_registered(kizuna, kizuna.emulator, name="会員 次郎")
    await chat2.say("会員をやめる")
    [done] = await chat2.say("退会する")  # typed at the confirmation: a yes, not a restart
    assert done["text"].startswith(DONE)


async def test_cancel_or_no_changes_nothing(kizuna):
    chat, customer = await make_registered(kizuna, kizuna.emulator)
    await chat.say("退会")
    [cancelled] = await chat.say("やめる")
    assert cancelled["text"] == "お手続きを中止しました。またいつでもお気軽にどうぞ。"
    await chat.tap("action=withdraw")
    [kept] = await chat.tap(NO)
    assert kept["text"] == "退会のお手続きを中止しました。引き続き会員としてご利用いただけます。"
    await chat.say("退会")
    hint, again = await chat.say("どういうこと？", expect=2)  # what to answer, then the question again
    assert hint["text"].startswith("退会する場合は「退会する」をタップするか「はい」と")
    assert again["text"].startswith("退会すると")
    await chat.say("やめる")

    stored = await customer_row(kizuna, chat.user_id)
    assert stored.registered is True and stored.full_name == "会員 太郎" and stored.marketing_opt_in is True
    assert stored.withdrawn_at is None
    assert await ledger(kizuna, customer.id) == []
    assert "withdrawn" not in [row["kind"] for row in await kizuna.timeline(chat.user_id)]


async def test_non_members_get_a_short_answer_and_the_faq_no_longer_answers_withdrawal(kizuna):
    status, _ = await import_faq(kizuna)
    assert status == 200
    user = kizuna.emulator.add_user(display_name="通りすがり")
    chat = Chat(kizuna.emulator, user.user_id)
    faq_answer = ANSWERS["withdraw"]
    for word in ("退会", "退会したい", "退会する"):
        [answer] = await chat.say(word)
        assert answer["text"].startswith(NOT_MEMBER) and answer["text"] != faq_answer
    [tapped] = await chat.tap("action=withdraw")
    assert tapped["text"].startswith(NOT_MEMBER)
    # A member who asks gets the confirmation, not the FAQ either: the FAQ's answer is now true.
    member, _ = await make_registered(kizuna, kizuna.emulator)
    [explain] = await member.say("退会したい")
    assert explain["text"].startswith("退会すると") and faq_answer not in [m.message.get("text") for m in kizuna.emulator.messages_to(member.user_id)]


async def test_registering_again_works_without_a_second_sign_up_coupon(kizuna):
    await registration_coupon(kizuna)
    menus = await richmenu.setup(kizuna.server.app[LINE])
    user = kizuna.emulator.add_user(display_name="山田 花子")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    await register_in_chat(kizuna, chat, expect=3)
    await chat.say("退会")
    await chat.tap(YES)
    customer = await customer_row(kizuna, user.user_id)

    done, no_coupon = await register_in_chat(kizuna, chat, expect=2)
    assert done["text"] == "会員登録が完了しました。ありがとうございます！"
    assert no_coupon["text"] == "会員登録特典クーポンはお一人様1回限りのため、再登録の際にはお送りしておりません。"
    stored = await customer_row(kizuna, user.user_id)
    assert stored.registered is True and stored.full_name == "山田 花子" and stored.marketing_opt_in is True
    assert stored.privacy_notice_id is not None
    [grant] = await grants_of(kizuna, customer.id)  # still the one revoked grant
    assert grant.status == GrantStatus.REVOKED
    member_menu = menus.menu("registered").rich_menu_id

    async def member_menu_again() -> bool:
        linked = kizuna.emulator.rich_menu_for(user.user_id)
        return linked is not None and linked.rich_menu_id == member_menu

    await eventually(member_menu_again, what="the member menu linked again")
    rows = await ledger(kizuna, customer.id)
    assert rows[-3:] == [("membership", "granted", "1", "line_chat"), ("analytics", "granted", "1", "line_chat"),
                         ("marketing", "granted", "1", "line_chat")]
    # And they can leave again.
    await chat.say("退会")
    [done] = await chat.tap(YES)
    assert done["text"].startswith(DONE)


async def test_the_shop_may_keep_the_data_until_the_retention_purge(kizuna):
    async with transaction(kizuna.sessions) as session:
        await consents.set_withdrawal_data(session, "keep", actor=None)
    chat, customer = await make_registered(kizuna, kizuna.emulator)
    [explain] = await chat.say("退会")
    assert "当店の保存期間が過ぎたのち削除します" in explain["text"]
    await chat.tap(YES)
    stored = await customer_row(kizuna, chat.user_id)
    assert stored.registered is False and stored.marketing_opt_in is False and stored.withdrawn_at is not None
    assert stored.full_name == "会員 太郎" and stored.phone == "+819012345678"
    withdrawn = next(row for row in await kizuna.timeline(chat.user_id) if row["kind"] == "withdrawn")
    assert withdrawn["payload"]["data"] == "kept" and withdrawn["payload"]["cleared"] == []


async def test_marketing_switches_and_a_new_notice_version_are_on_the_ledger(kizuna):
    user = kizuna.emulator.add_user(display_name="山田 花子")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.marketing")
    await chat.say("受け取らない")
    await chat.say("登録する")
    customer = await customer_row(kizuna, user.user_id)
    assert customer.privacy_notice_id is not None
    await chat.tap("action=marketing&value=on")
    await chat.say("お知らせを受け取らない")
    assert await ledger(kizuna, customer.id) == [
        ("membership", "granted", "1", "line_chat"), ("analytics", "granted", "1", "line_chat"),
        ("marketing", "withdrawn", "1", "line_chat"), ("marketing", "granted", "1", "line_chat"),
        ("marketing", "withdrawn", "1", "line_chat"),
    ]

    # The shop publishes version 2: the member's card asks them to accept it.
    async with transaction(kizuna.sessions) as session:
        notice = await consents.publish_notice(
            session, version="2", url="https://example.com/privacy/v2", text="第2版", now=utcnow(), actor=None,
            purposes={"membership": "会員サービス", "marketing": "お知らせ", "analytics": "分析"})
    [card] = await chat.tap("action=member_info")
    assert "プライバシーポリシーが更新されました" in flex_texts(card)[1]
    buttons = flex_buttons(card)
    assert buttons[0]["data"] == f"action=privacy_accept&notice={notice.id}"
    assert buttons[1] == {"type": "uri", "label": "プライバシーポリシーを読む", "uri": "https://example.com/privacy/v2"}
    [accepted] = await chat.tap(buttons[0]["data"])
    assert accepted["text"] == "新しいプライバシーポリシーへの同意を承りました。ありがとうございます。"
    assert (await customer_row(kizuna, user.user_id)).privacy_notice_id == notice.id
    assert (await ledger(kizuna, customer.id))[-2:] == [("membership", "granted", "2", "line_chat"), ("analytics", "granted", "2", "line_chat")]
    [card] = await chat.tap("action=member_info")
    assert not any("プライバシーポリシーが更新されました" in text for text in flex_texts(card))
    # The consent question of a new registration shows the current version's address.
    other = Chat(kizuna.emulator, kizuna.emulator.add_user(display_name="次の人").user_id)
    [consent] = await other.tap("action=register")
    assert "https://example.com/privacy/v2" in consent["text"]
    async with kizuna.sessions() as session:
        counts = {count.notice.version: count.members for count in await consents.counts_per_notice(session)}
        assert (await session.execute(sa.select(sa.func.count()).select_from(PrivacyNotice))).scalar_one() == 2
        assert (await session.execute(sa.select(sa.func.count()).select_from(ConsentRecord))).scalar_one() == 7
    assert counts == {"2": 1, "1": 0}
    assert quick_actions(consent)[0]["type"] == "postback"
