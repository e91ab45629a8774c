"""Member registration end to end: signed webhooks from the emulator in, replies captured
at the emulator, rows read back through the REST API and storage. Same tests on SQLite
and on PostgreSQL + Redis."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from kizuna.bot import richmenu
from kizuna.bot.keys import LINE, REDIS, SESSIONS
from kizuna.flows import all_flows
from kizuna.handlers import Router, build_router
from kizuna.storage import conversations, coupons, customers, flow_states, interactions
from kizuna.storage.db import transaction
from kizuna.storage.models import CouponGrant, Customer, FlowState, Interaction
from kizuna.storage.types import utcnow
from tests.conftest import TEST_REDIS_URL, eventually, start_kizuna

ASK_NAME = "お名前を教えてください。（例：山田 花子）"
RECEIPT = "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"


# -- helpers -----------------------------------------------------------------------------------


class Chat:
    """One customer talking to the bot: each call sends one event and returns the replies
    it caused (exactly `expect` messages)."""

    def __init__(self, emulator, user_id: str) -> None:
        self.emulator, self.user_id = emulator, user_id

    async def _replies(self, send, expect: int) -> list[dict]:
        before = len(self.emulator.messages_to(self.user_id))
        result = await send
        assert result.status == 200, result
        delivered = await self.emulator.wait_for_messages(self.user_id, before + expect)
        new = delivered[before:]
        assert len(new) == expect, [m.message for m in new]
        return [m.message for m in new]

    async def say(self, text: str, expect: int = 1) -> list[dict]:
        return await self._replies(self.emulator.send_text(self.user_id, text), expect)

    async def tap(self, data: str, params: dict | None = None, expect: int = 1) -> list[dict]:
        return await self._replies(self.emulator.send_postback(self.user_id, data=data, params=params), expect)

    async def sticker(self, expect: int = 1) -> list[dict]:
        return await self._replies(self.emulator.send_sticker(self.user_id), expect)


def text_of(message: dict) -> str:
    return message.get("text") or message.get("altText") or ""


def quick_labels(message: dict) -> list[str]:
    return [item["action"]["label"] for item in (message.get("quickReply") or {}).get("items", [])]


def quick_actions(message: dict) -> list[dict]:
    return [item["action"] for item in (message.get("quickReply") or {}).get("items", [])]


def flex_texts(message: dict) -> list[str]:
    """Every text in a Flex message, depth first."""
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "text" and "text" in node:
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("contents"))
    return found


def flex_rows(message: dict) -> dict[str, str]:
    """label -> value of a summary card."""
    rows = {}
    for box in message["contents"]["body"]["contents"]:
        if box.get("type") == "box" and box.get("layout") == "baseline":
            label, value = box["contents"]
            rows[label["text"]] = value["text"]
    return rows


def flex_buttons(message: dict) -> list[dict]:
    return [c["action"] for c in message["contents"].get("footer", {}).get("contents", []) if c["type"] == "button"]


async def customer_row(kizuna, user_id: str) -> Customer:
    async with kizuna.sessions() as session:
        return await customers.get_by_line_user_id(session, user_id)


async def flow_row(kizuna, user_id: str) -> FlowState | None:
    customer = await customer_row(kizuna, user_id)
    async with kizuna.sessions() as session:
        return await flow_states.get(session, customer.id)


async def registration_coupon(kizuna, **fields):
    values = {"title": "会員登録500円OFF", "discount_type": "amount", "discount_value": 500, "valid_days": 30, "trigger": "registration", **fields}
    async with transaction(kizuna.sessions) as session:
        return await coupons.create_coupon(session, values)


async def grants_of(kizuna, customer_id: int) -> list[CouponGrant]:
    async with kizuna.sessions() as session:
        return list((await session.execute(sa.select(CouponGrant).where(CouponGrant.customer_id == customer_id))).scalars())


async def walk_to(chat: Chat, state: str) -> None:
    """From nothing to the given registration state, answering everything validly."""
    steps = [
        ("registration.consent", lambda: chat.tap("action=register")),
        ("registration.name", lambda: chat.say("同意する")),
        ("registration.birthday", lambda: chat.say("山田 花子")),
        ("registration.gender", lambda: chat.say("1990/01/31")),
        ("registration.prefecture", lambda: chat.say("女性")),
        ("registration.phone", lambda: chat.say("東京都")),
        ("registration.email", lambda: chat.say("090-1234-5678")),
        ("registration.marketing", lambda: chat.say("hanako@example.com")),
        ("registration.confirm", lambda: chat.say("はい")),
    ]
    for reached, step in steps:
        await step()
        if reached == state:
            return
    raise AssertionError(f"unknown state {state}")


async def make_registered(kizuna, emulator, name="会員 太郎", language="ja") -> tuple[Chat, Customer]:
    """A customer registered directly in storage (the flow itself is tested elsewhere)."""
    user = emulator.add_user(display_name=name, language=language)
    chat = Chat(emulator, user.user_id)
    await chat._replies(emulator.follow(user.user_id), 1)
    async with transaction(kizuna.sessions) as session:
        customer = await customers.get_by_line_user_id(session, user.user_id)
        customers.complete_registration(
            customer, profile={"full_name": "会員 太郎", "birthday": date(1980, 5, 5), "gender": "male", "prefecture": "東京都",
                               "phone": "+819012345678", "email": None},
            marketing_opt_in=True, consented_at=utcnow(), at=utcnow(),
        )
    return chat, await customer_row(kizuna, user.user_id)


# -- the happy path ---------------------------------------------------------------------------


async def test_happy_path_stores_typed_values_issues_the_coupon_and_records_the_timeline(kizuna):
    started = time.monotonic()
    coupon = await registration_coupon(kizuna)
    menus = await richmenu.setup(kizuna.server.app[LINE])
    user = kizuna.emulator.add_user(display_name="山田 花子", language="ja")
    chat = Chat(kizuna.emulator, user.user_id)

    [greeting] = await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    [offer] = quick_actions(greeting)
    assert offer == {"type": "postback", "label": "会員登録する", "data": "action=register", "displayText": "会員登録する"}

    [consent] = await chat.tap("action=register")
    assert "https://example.com/privacy" in consent["text"]
    assert quick_labels(consent) == ["同意する", "同意しない"]
    assert (await chat.say("同意する"))[0]["text"] == ASK_NAME
    [ask_birthday] = await chat.say("山田　花子")  # a full-width space
    picker = quick_actions(ask_birthday)[0]
    assert picker["type"] == "datetimepicker" and picker["data"] == "action=birthday&state=registration.birthday" and picker["mode"] == "date"
    assert picker["initial"] == "1990-01-01" and picker["min"] == "1900-01-01"
    assert picker["max"] == datetime.now(timezone(timedelta(hours=9))).date().isoformat()
    [ask_gender] = await chat.say("１９９０年１月３１日")  # full-width digits
    assert quick_labels(ask_gender) == ["女性", "男性", "その他", "回答しない"]
    [ask_prefecture] = await chat.say("女性")
    assert "東京都" in quick_labels(ask_prefecture)
    [ask_phone] = await chat.say("おおさか")
    assert quick_labels(ask_phone) == ["スキップ"]
    [ask_email] = await chat.say("０９０ー１２３４ー５６７８")
    [ask_marketing] = await chat.say("Hanako@Example.COM")
    assert quick_labels(ask_marketing) == ["受け取る", "受け取らない"]
    [confirm] = await chat.say("はい")

    assert confirm["type"] == "flex" and confirm["altText"] == "登録内容の確認"  # no personal data in notifications
    assert flex_rows(confirm) == {
        "お名前": "山田 花子", "生年月日": "1990年1月31日", "性別": "女性", "都道府県": "大阪府",
        "電話番号": "090-1234-5678", "メールアドレス": "Hanako@example.com", "お知らせの配信": "受け取る",
    }
    assert quick_labels(confirm) == ["登録する", "修正する"]
    assert [b["label"] for b in flex_buttons(confirm)] == ["登録する", "修正する"]
    # Nothing is stored before the customer confirms.
    before = await customer_row(kizuna, user.user_id)
    assert before.registered is False and before.full_name is None and before.privacy_consented_at is None

    done, intro, coupon_message = await chat.say("登録する", expect=3)
    assert done["text"] == "会員登録が完了しました。ありがとうございます！"
    assert "特典クーポン" in intro["text"]
    assert coupon_message["type"] == "flex"  # the coupon is the last reply
    assert time.monotonic() - started < 30

    member_menu = menus.menu("registered").rich_menu_id

    async def member_menu_linked() -> bool:
        return kizuna.emulator.rich_menu_for(user.user_id).rich_menu_id == member_menu

    await eventually(member_menu_linked, what="the member rich menu linked after registration")

    stored = await customer_row(kizuna, user.user_id)
    assert (stored.full_name, stored.birthday, stored.gender, stored.prefecture, stored.phone, stored.email) == (
        "山田 花子", date(1990, 1, 31), "female", "大阪府", "+819012345678", "Hanako@example.com")
    assert stored.registered is True and stored.marketing_opt_in is True
    assert stored.registered_at is not None and stored.marketing_consent_changed_at is not None
    assert stored.privacy_consented_at is not None and stored.privacy_consented_at <= stored.registered_at
    assert await flow_row(kizuna, user.user_id) is None

    [grant] = await grants_of(kizuna, stored.id)
    assert grant.coupon_id == coupon.id and grant.code in flex_texts(coupon_message)

    timeline = await kizuna.timeline(user.user_id)
    kinds = [(row["direction"], row["kind"]) for row in timeline]
    assert ("sys", "flow.started") in kinds and ("sys", "registered") in kinds and ("sys", "coupon.issued") in kinds
    assert kinds.index(("sys", "registered")) < kinds.index(("sys", "coupon.issued"))
    inbound = [row["text"] for row in timeline if row["direction"] == "in" and row["kind"] == "message.text"]
    assert inbound == ["同意する", "山田　花子", "１９９０年１月３１日", "女性", "おおさか", "０９０ー１２３４ー５６７８",
                       "Hanako@Example.COM", "はい", "登録する"]
    outbound = [row["text"] for row in timeline if row["direction"] == "out"]
    assert ASK_NAME in outbound and done["text"] in outbound
    registered = next(row for row in timeline if row["kind"] == "registered")
    assert registered["payload"] == {"fields": ["full_name", "birthday", "gender", "prefecture", "phone", "email"], "marketing_opt_in": True}
    assert "marketing.opted_in" in [row["kind"] for row in timeline]

    # Registered: 会員登録 again is refused kindly, and no second coupon is given.
    [already] = await chat.say("会員登録")
    assert already["text"].startswith("すでに会員登録がお済みです")
    assert quick_actions(already)[0]["data"] == "action=member_info"
    assert len(await grants_of(kizuna, stored.id)) == 1
    assert await flow_row(kizuna, user.user_id) is None
    # A registered customer's greeting offers no registration.
    await kizuna.emulator.unfollow(user.user_id)
    [welcome_back] = await chat._replies(kizuna.emulator.follow(user.user_id, is_unblocked=True), 1)
    assert "quickReply" not in welcome_back


async def test_consent_declined_stores_nothing(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat.say("会員登録")
    [bye] = await chat.say("同意しない")
    assert "情報はお預かりしていません" in bye["text"]
    stored = await customer_row(kizuna, user.user_id)
    assert stored.registered is False and stored.privacy_consented_at is None and stored.marketing_consent_changed_at is None
    assert all(getattr(stored, column) is None for column in customers.PROFILE_COLUMNS)
    assert await flow_row(kizuna, user.user_id) is None
    kinds = [row["kind"] for row in await kizuna.timeline(user.user_id) if row["direction"] == "sys"]
    assert kinds == ["flow.started"]
    # The next message is not taken as an answer.
    [receipt] = await chat.say("山田 花子")
    assert receipt["text"] == RECEIPT


async def test_invalid_answers_explain_and_ask_again(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.consent")
    wrong, again = await chat.say("よくわからない", expect=2)
    assert "同意する" in wrong["text"] and quick_labels(again) == ["同意する", "同意しない"]
    await chat.say("同意する")

    wrong, again = await chat.say("12345", expect=2)
    assert wrong["text"] == "数字だけのお名前は登録できません。「山田 花子」のように入力してください。" and again["text"] == ASK_NAME
    assert (await chat.sticker())[0]["text"] == ASK_NAME  # a sticker asks again, nothing more
    await chat.say("山田 花子")

    wrong, again = await chat.say("2000/2/30", expect=2)
    assert wrong["text"].startswith("2000年2月30日という日付はありません")
    assert quick_actions(again)[0]["type"] == "datetimepicker"
    assert (await flow_row(kizuna, user.user_id)).state == "registration.birthday"
    wrong, _ = await chat.say("2999/01/01", expect=2)
    assert wrong["text"].startswith("未来の日付は登録できません")
    await chat.say("平成2年1月31日")

    wrong, _ = await chat.say("たぶん", expect=2)
    assert wrong["text"].startswith("性別は「女性」「男性」「その他」「回答しない」")
    await chat.say("男")

    wrong, _ = await chat.say("ニューヨーク", expect=2)
    assert wrong["text"].startswith("都道府県名を")
    assert (await flow_row(kizuna, user.user_id)).state == "registration.prefecture"
    await chat.say("Ｔｏｋｙｏ")

    wrong, _ = await chat.say("123", expect=2)
    assert "電話番号" in wrong["text"]
    await chat.say("03-1234-5678")

    wrong, _ = await chat.say("hanako@", expect=2)
    assert wrong["text"].startswith("メールアドレスの形式が正しくありません")
    await chat.say("ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｃｏｍ")

    wrong, _ = await chat.say("どうしようかな", expect=2)
    assert "「受け取る」" in wrong["text"]
    [confirm] = await chat.say("いいえ")
    assert flex_rows(confirm)["生年月日"] == "1990年1月31日"
    assert flex_rows(confirm)["性別"] == "男性" and flex_rows(confirm)["都道府県"] == "東京都"
    assert flex_rows(confirm)["電話番号"] == "03-1234-5678" and flex_rows(confirm)["メールアドレス"] == "hanako@example.com"
    wrong, _ = await chat.say("うーん", expect=2)
    assert wrong["text"] == "「登録する」か「修正する」をタップしてください。"
    assert (await flow_row(kizuna, user.user_id)).state == "registration.confirm"


async def test_optional_fields_skip_and_the_date_picker(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.birthday")
    [ask_gender] = await chat.tap("action=birthday&state=registration.birthday", params={"date": "1985-04-01"})
    assert quick_labels(ask_gender)[0] == "女性"
    await chat.say("回答しない")
    await chat.say("hokkaido")
    await chat.say("スキップ")
    await chat.say("なし")
    [confirm] = await chat.say("いいえ")
    rows = flex_rows(confirm)
    assert rows["電話番号"] == rows["メールアドレス"] == "未登録" and rows["生年月日"] == "1985年4月1日"
    assert rows["性別"] == "回答しない" and rows["都道府県"] == "北海道" and rows["お知らせの配信"] == "受け取らない"

    # No registration coupon is configured: nothing is said about one (no "none left").
    [done] = await chat.say("登録する")
    assert done["text"] == "会員登録が完了しました。ありがとうございます！"
    stored = await customer_row(kizuna, user.user_id)
    assert stored.registered and stored.birthday == date(1985, 4, 1) and stored.gender == "unanswered"
    assert stored.phone is None and stored.email is None and stored.prefecture == "北海道"
    assert stored.marketing_opt_in is False and stored.marketing_consent_changed_at is not None
    assert "marketing.opted_in" not in [row["kind"] for row in await kizuna.timeline(user.user_id)]


async def test_out_of_stock_coupon_still_registers(kizuna):
    await registration_coupon(kizuna, stock=0)
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.confirm")
    done, no_coupon = await chat.say("登録する", expect=2)
    assert no_coupon["text"] == "申し訳ございません。会員登録特典クーポンの配布は終了しました。"
    stored = await customer_row(kizuna, user.user_id)
    assert stored.registered and await grants_of(kizuna, stored.id) == []


async def test_edit_one_field_goes_back_to_confirm(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.confirm")
    [which] = await chat.say("修正する")
    actions = quick_actions(which)
    assert {"type": "postback", "label": "生年月日", "data": "action=edit&field=birthday&state=registration.edit", "displayText": "生年月日"} in actions
    assert [a["label"] for a in actions][-1] == "戻る"

    [ask_birthday] = await chat.tap("action=edit&field=birthday&state=registration.edit")
    assert quick_actions(ask_birthday)[0]["initial"] == "1990-01-31"  # the picker starts at the answer given
    [confirm] = await chat.say("1991-02-03")  # straight back, not through gender and the rest
    assert confirm["type"] == "flex" and flex_rows(confirm)["生年月日"] == "1991年2月3日"

    await chat.say("修正する")
    await chat.say("メールアドレス")  # a field can be named, too
    [confirm] = await chat.say("スキップ")
    assert flex_rows(confirm)["メールアドレス"] == "未登録"
    await chat.say("修正する")
    [confirm] = await chat.say("戻る")
    assert confirm["type"] == "flex"

    await chat.say("登録する")
    stored = await customer_row(kizuna, user.user_id)
    assert stored.birthday == date(1991, 2, 3) and stored.email is None and stored.gender == "female"


# -- fallbacks in every state -----------------------------------------------------------------

FULL_DATA = {
    "consented_at": "2026-01-01T00:00:00+00:00",
    "values": {"full_name": "山田 花子", "birthday": "1990-01-31", "gender": "female", "prefecture": "東京都",
               "phone": None, "email": "hanako@example.com", "marketing_opt_in": True},
}


async def _put_in_state(kizuna, customer_id: int, state: str, *, expires_at: datetime | None = None) -> None:
    async with transaction(kizuna.sessions) as session:
        await flow_states.save(session, customer_id, flow=state.split(".")[0], state=state,
                               data=FULL_DATA if state.startswith("registration.") else {},
                               expires_at=expires_at or utcnow() + timedelta(minutes=30))


async def test_cancel_handoff_timeout_and_stickers_work_in_every_state(kizuna):
    chat, customer = await make_registered(kizuna, kizuna.emulator)
    states = [state.id for flow in all_flows() for state in flow.states]
    assert len(states) == 18  # registration 10, profile 7, withdrawal 1
    for state in states:
        await _put_in_state(kizuna, customer.id, state)
        [prompt] = await chat.sticker()  # every prompt renders and passes LINE's validation
        assert (await flow_row(kizuna, chat.user_id)).state == state, state

        [cancelled] = await chat.say("やめる")
        assert cancelled["text"] == "お手続きを中止しました。またいつでもお気軽にどうぞ。", state
        assert await flow_row(kizuna, chat.user_id) is None

        await _put_in_state(kizuna, customer.id, state)
        [handoff] = await chat.say("担当者")
        assert handoff["text"].startswith("担当者におつなぎします"), state
        assert await flow_row(kizuna, chat.user_id) is None
        await _resolve_conversation(kizuna, customer.id)  # staff hand the customer back to the bot

        await _put_in_state(kizuna, customer.id, state, expires_at=utcnow() - timedelta(seconds=1))
        messages = await chat.sticker(expect=2)
        assert messages[0]["text"].startswith("前回のお手続きは、一定時間が経過したため終了しました"), state
        assert await flow_row(kizuna, chat.user_id) is None

    async with kizuna.sessions() as session:
        rows = (await session.execute(
            sa.select(Interaction.kind, Interaction.payload).where(Interaction.customer_id == customer.id, Interaction.direction == "sys").order_by(Interaction.id)
        )).all()
    for kind in ("flow.cancelled", "flow.handed_off", "flow.timed_out"):
        assert [payload["state"] for row_kind, payload in rows if row_kind == kind] == states, kind


async def _resolve_conversation(kizuna, customer_id: int) -> None:
    async with transaction(kizuna.sessions) as session:
        conversation = await conversations.active_for(session, customer_id)
        await conversations.resolve(session, conversation.id, utcnow())


async def test_cancel_and_handoff_mid_conversation(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.gender")
    [cancelled] = await chat.tap("action=cancel")
    assert cancelled["text"].startswith("お手続きを中止しました")
    assert (await customer_row(kizuna, user.user_id)).full_name is None  # nothing kept

    await walk_to(chat, "registration.phone")
    [handoff] = await chat.say("担当者と話したい")
    assert handoff["text"].startswith("担当者におつなぎします")
    timeline = await kizuna.timeline(user.user_id)
    [row] = [row for row in timeline if row["kind"] == "flow.handed_off"]
    assert row["payload"] == {"flow": "registration", "state": "registration.phone"}
    [handoff_row] = [row for row in timeline if row["kind"] == "conversation.bot_handoff"]
    assert handoff_row["payload"]["reason"] == "keyword"
    assert await flow_row(kizuna, user.user_id) is None
    assert (await customer_row(kizuna, user.user_id)).registered is False


async def test_timeout_says_so_on_the_next_message(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.birthday")
    async with transaction(kizuna.sessions) as session:
        await session.execute(sa.update(FlowState).values(expires_at=utcnow() - timedelta(minutes=1)))
    before = len(kizuna.emulator.messages_to(user.user_id))
    await kizuna.emulator.send_text(user.user_id, "1990/01/31")
    messages = await kizuna.emulator.wait_for_messages(user.user_id, before + 1)
    assert messages[before].message["text"].startswith("前回のお手続きは、一定時間が経過したため終了しました")
    assert await flow_row(kizuna, user.user_id) is None
    assert (await customer_row(kizuna, user.user_id)).birthday is None
    [row] = [row for row in await kizuna.timeline(user.user_id) if row["kind"] == "flow.timed_out"]
    assert row["payload"] == {"flow": "registration", "state": "registration.birthday"}


# -- restarts and several workers ----------------------------------------------------------------


async def test_conversation_survives_a_restart(settings, emulator):
    server, _token = await start_kizuna(settings, emulator)
    user = emulator.add_user(display_name="テスト")
    chat = Chat(emulator, user.user_id)
    try:
        await walk_to(chat, "registration.gender")
    finally:
        await server.close()

    server, _token = await start_kizuna(settings, emulator)  # a new process, the same database
    try:
        await chat.say("その他")
        await chat.say("福岡")
        await chat.say("スキップ")
        await chat.say("スキップ")
        await chat.say("はい")
        await chat.say("登録する")
        async with _sessions(server)() as session:
            stored = await customers.get_by_line_user_id(session, user.user_id)
        assert stored.registered and stored.full_name == "山田 花子" and stored.gender == "other" and stored.prefecture == "福岡県"
    finally:
        await server.close()


def _sessions(server):
    return server.app[SESSIONS]


class CountingRouter(Router):
    """The normal handlers, counting the events this instance's worker processed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.include(build_router())
        self.processed: list[str] = []

    async def dispatch(self, event, ctx) -> bool:
        self.processed.append(ctx.event_type)
        return await super().dispatch(event, ctx)


@pytest.mark.skipif(TEST_REDIS_URL is None, reason="two workers share work through Redis: set KIZUNA_TEST_REDIS_URL")
async def test_two_workers_continue_each_others_conversation(settings, emulator):
    routers = [CountingRouter("a"), CountingRouter("b")]
    servers = []
    try:
        for router in routers:
            server, _token = await start_kizuna(settings, emulator, router=router)
            servers.append(server)
        urls = [str(server.make_url("/callback")) for server in servers]
        user = emulator.add_user(display_name="テスト")
        chat = Chat(emulator, user.user_id)
        answers = ["同意する", "山田 花子", "1990/01/31", "女性", "東京都", "090-1234-5678", "スキップ", "いいえ"]
        redis = servers[0].app[REDIS]
        lock_key = f"{settings.redis_prefix}:lock:source:{user.user_id}"

        async def source_released() -> bool:
            return not await redis.exists(lock_key)

        emulator.webhook_url = urls[0]
        await chat.tap("action=register")
        # One answer at a time, each webhook to the other instance. The worker that holds
        # a customer keeps draining while events keep coming, so wait until it lets go:
        # then the next event goes to whichever worker reads first.
        for index, answer in enumerate(answers[:6]):
            await eventually(source_released, what="source lock released")
            emulator.webhook_url = urls[(index + 1) % 2]
            await chat.say(answer)
        # The rest without waiting: both instances queue, both workers take turns, the
        # per-customer lock keeps the order.
        before = len(emulator.messages_to(user.user_id))
        for index, answer in enumerate([*answers[6:], "登録する"]):
            emulator.webhook_url = urls[index % 2]
            result = await emulator.send_text(user.user_id, answer)
            assert result.status == 200
        messages = await emulator.wait_for_messages(user.user_id, before + 3, timeout=15)
        assert messages[-1].message["text"].startswith("会員登録が完了しました"), [m.message for m in messages[before:]]

        async with _sessions(servers[0])() as session:
            stored = await customers.get_by_line_user_id(session, user.user_id)
        assert stored.registered and stored.phone == "+819012345678" and stored.email is None and stored.marketing_opt_in is False
        assert all(router.processed for router in routers), [router.processed for router in routers]
        assert sum(len(router.processed) for router in routers) == 1 + len(answers) + 1
        async with _sessions(servers[0])() as session:
            rows = list(reversed(await interactions.latest(session, stored.id, limit=200)))
        assert [row.text for row in rows if row.direction == "in" and row.kind == "message.text"] == [*answers, "登録する"]
    finally:
        for server in servers:
            await server.close()


# -- member info, profile changes, marketing ----------------------------------------------------


async def test_member_info_shows_details_and_changes_a_field(kizuna):
    chat, customer = await make_registered(kizuna, kizuna.emulator)
    [card] = await chat.say("会員情報")
    assert card["type"] == "flex" and card["altText"] == "会員情報"
    assert flex_rows(card) == {"お名前": "会員 太郎", "生年月日": "1980年5月5日", "性別": "男性", "都道府県": "東京都",
                               "電話番号": "090-1234-5678", "メールアドレス": "未登録", "お知らせの配信": "受け取る"}
    assert [b["data"] for b in flex_buttons(card)] == ["action=profile_edit", "action=marketing&value=off", "action=withdraw"]

    [which] = await chat.tap("action=profile_edit")
    assert [a["data"] for a in quick_actions(which)] == [f"action=edit&field={f}&state=profile.edit" for f in ("name", "birthday", "gender", "prefecture", "phone", "email")]
    [ask] = await chat.tap("action=edit&field=prefecture&state=profile.edit")
    assert ask["text"].startswith("お住まいの都道府県")
    wrong, _ = await chat.say("どこか", expect=2)
    assert wrong["text"].startswith("都道府県名を")
    updated, card = await chat.say("京都", expect=2)
    assert updated["text"] == "都道府県を変更しました。" and flex_rows(card)["都道府県"] == "京都府"
    assert (await customer_row(kizuna, chat.user_id)).prefecture == "京都府"
    assert await flow_row(kizuna, chat.user_id) is None

    await chat.tap("action=profile_edit")
    await chat.tap("action=edit&field=phone&state=profile.edit")
    removed, _card = await chat.say("スキップ", expect=2)
    assert removed["text"] == "電話番号の登録を削除しました。"
    stored = await customer_row(kizuna, chat.user_id)
    assert stored.phone is None and stored.registered

    timeline = await kizuna.timeline(chat.user_id)
    assert [row["payload"] for row in timeline if row["kind"] == "profile.updated"] == [{"field": "prefecture"}, {"field": "phone"}]


async def test_marketing_can_be_turned_off_and_on(kizuna):
    chat, customer = await make_registered(kizuna, kizuna.emulator)
    chosen_at = customer.marketing_consent_changed_at
    [off] = await chat.tap("action=marketing&value=off")
    assert off["text"].startswith("お知らせの配信を受け取らない設定にしました")
    stored = await customer_row(kizuna, chat.user_id)
    assert stored.marketing_opt_in is False and stored.marketing_consent_changed_at > chosen_at

    [card] = await chat.tap("action=member_info")
    assert flex_rows(card)["お知らせの配信"] == "受け取らない"
    assert flex_buttons(card)[1] == {"type": "postback", "label": "お知らせを受け取る", "data": "action=marketing&value=on", "displayText": "お知らせを受け取る"}
    [on] = await chat.tap("action=marketing&value=on")
    assert on["text"].startswith("お知らせの配信を受け取る設定にしました")
    assert (await customer_row(kizuna, chat.user_id)).marketing_opt_in is True
    await chat.tap("action=marketing&value=on")  # no change, no new row

    kinds = [row["kind"] for row in await kizuna.timeline(chat.user_id) if row["kind"].startswith("marketing.")]
    assert kinds == ["marketing.opted_out", "marketing.opted_in"]


async def test_unregistered_customers_are_invited_to_register(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    for send in (lambda: chat.say("会員情報"), lambda: chat.tap("action=member_info"), lambda: chat.tap("action=profile_edit"),
                 lambda: chat.tap("action=marketing&value=on")):
        [invite] = await send()
        assert invite["text"] == "まだ会員登録がお済みではありません。会員登録は「会員登録する」をタップしてお手続きください。"
        assert quick_actions(invite)[0]["data"] == "action=register"
    stored = await customer_row(kizuna, user.user_id)
    assert stored.marketing_opt_in is False and await flow_row(kizuna, user.user_id) is None
    [consent] = await chat.tap("action=register")
    assert quick_labels(consent) == ["同意する", "同意しない"]


async def test_member_info_mid_registration_asks_the_question_again(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.gender")
    invite, again = await chat.say("会員情報", expect=2)
    assert invite["text"].startswith("まだ会員登録") and quick_labels(again)[0] == "女性"
    assert (await flow_row(kizuna, user.user_id)).state == "registration.gender"


# -- languages and edited texts ----------------------------------------------------------------


async def test_english_customers_get_english(kizuna):
    user = kizuna.emulator.add_user(display_name="Alex", language="en")
    chat = Chat(kizuna.emulator, user.user_id)
    [greeting] = await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    assert quick_labels(greeting) == ["Become a member"]
    [consent] = await chat.tap("action=register")
    assert consent["text"].startswith("Let's get you registered") and quick_labels(consent) == ["I agree", "I don't agree"]
    [ask_name] = await chat.say("I agree")
    assert ask_name["text"].startswith("What is your name?")
    await chat.say("Alex Smith")
    wrong, _ = await chat.say("2000/2/30", expect=2)
    assert wrong["text"] == "Please enter a real date of birth like 1990/01/31."
    [ask_gender] = await chat.say("1990-01-31")
    assert quick_labels(ask_gender) == ["Female", "Male", "Other", "Prefer not to say"]
    await chat.say("Prefer not to say")
    await chat.say("kyoto")
    await chat.say("Skip")
    await chat.say("Skip")
    [confirm] = await chat.say("No")
    assert flex_rows(confirm)["Date of birth"] == "1990-01-31" and flex_rows(confirm)["Prefecture"] == "京都府"
    [done] = await chat.say("Confirm")
    assert done["text"] == "You are now registered. Thank you!"
    stored = await customer_row(kizuna, user.user_id)
    assert stored.registered and stored.full_name == "Alex Smith" and stored.gender == "unanswered"


async def test_texts_are_editable(kizuna):
    status, _ = await kizuna.api("PUT", "/api/v1/texts/privacy_policy_url/ja", json={"text": "https://shop.example.jp/privacy"})
    assert status == 200
    status, _ = await kizuna.api("PUT", "/api/v1/texts/registration_consent_yes/ja", json={"text": "同意して進む"})
    assert status == 200
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    [consent] = await chat.tap("action=register")
    assert "https://shop.example.jp/privacy" in consent["text"] and quick_labels(consent)[0] == "同意して進む"
    [ask_name] = await chat.say("同意して進む")  # the renamed button still answers
    assert ask_name["text"] == ASK_NAME
    status, body = await kizuna.api("GET", "/api/v1/texts")
    keys = {item["key"] for item in body["items"]} if "items" in body else {item["key"] for item in body}
    assert {"registration_ask_name", "registration_invalid_birthday", "member_info_title", "privacy_policy_url"} <= keys


# -- buttons of cards the customer has moved past -------------------------------------------------

STALE_REGISTERED = ("こちらのボタンは受付を終了しました。会員登録はすでに完了しています。"
                    "ご登録内容は「会員情報を見る」をタップしてご確認いただけます。")
STALE_RESTART = "こちらのボタンは受付を終了しました。会員登録をご希望の場合は、「会員登録する」をタップして、はじめからお手続きください。"
STALE_ANSWER_BELOW = "こちらのボタンは受付を終了しました。お手数ですが、下の質問にお答えください。"


async def tap_button(chat: Chat, action: dict, expect: int = 1) -> list[dict]:
    """Tap a button as LINE sends it: a postback's data (its displayText shows in the chat
    only), or a message action's text as a message."""
    if action["type"] == "message":
        return await chat.say(action["text"], expect=expect)
    return await chat._replies(chat.emulator.send_postback(chat.user_id, data=action["data"], display_text=action.get("displayText")), expect)


async def stale_rows(kizuna, user_id: str) -> list[dict]:
    return [row["payload"] for row in await kizuna.timeline(user_id) if row["kind"] == "flow.stale_button"]


async def test_the_summary_card_buttons_after_registering_get_a_short_right_answer(kizuna):
    """The defect: 登録する on an earlier summary sent plain text and got an FAQ choice list."""
    from tests.flows.test_inquiry import import_faq

    assert (await import_faq(kizuna))[0] == 200  # with an FAQ that would offer 会員登録 entries
    await registration_coupon(kizuna)
    user = kizuna.emulator.add_user(display_name="山田 花子")
    chat = Chat(kizuna.emulator, user.user_id)
    await walk_to(chat, "registration.marketing")
    [card] = await chat.say("はい")
    ok, edit = flex_buttons(card)
    assert ok["type"] == edit["type"] == "postback" and (ok["displayText"], edit["displayText"]) == ("登録する", "修正する")
    assert [a["type"] for a in quick_actions(card)] == ["postback", "postback"]

    done, _intro, _coupon = await tap_button(chat, ok, expect=3)
    assert done["text"] == "会員登録が完了しました。ありがとうございます！"
    assert (await customer_row(kizuna, user.user_id)).registered

    for button in (ok, edit, quick_actions(card)[0]):  # the same card, scrolled back to
        [reply] = await tap_button(chat, button)
        assert reply["text"] == STALE_REGISTERED
        assert [a["data"] for a in quick_actions(reply)] == ["action=member_info"]
    assert len(await grants_of(kizuna, (await customer_row(kizuna, user.user_id)).id)) == 1
    assert await stale_rows(kizuna, user.user_id) == [{"state": "registration.confirm", "current": None}] * 3
    kinds = [row["kind"] for row in await kizuna.timeline(user.user_id) if row["kind"].startswith("inquiry.")]
    assert kinds == []  # never the FAQ

    # A card of an earlier release sent its label as text: read the same way.
    [legacy] = await chat.say("登録する")
    assert legacy["text"] == STALE_REGISTERED


async def test_a_button_of_a_cancelled_registration_says_how_to_start_again(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    [consent] = await chat.tap("action=register")
    agree = quick_actions(consent)[0]
    assert agree["data"] == "action=step&state=registration.consent&value=yes" and agree["displayText"] == "同意する"
    await chat.say("やめる")
    [reply] = await tap_button(chat, agree)
    assert reply["text"] == STALE_RESTART
    assert [a["data"] for a in quick_actions(reply)] == ["action=register"]
    assert await flow_row(kizuna, user.user_id) is None
    [consent] = await chat.tap(quick_actions(reply)[0]["data"])  # and starting again works
    assert quick_labels(consent) == ["同意する", "同意しない"]


async def test_a_button_of_an_earlier_question_asks_the_current_one_again(kizuna):
    user = kizuna.emulator.add_user(display_name="テスト")
    chat = Chat(kizuna.emulator, user.user_id)
    [consent] = await chat.tap("action=register")
    await tap_button(chat, quick_actions(consent)[0])  # 同意する, tapped: the name is asked
    await chat.say("山田 花子")
    [ask_gender] = await chat.say("1990/01/31")
    stale, again = await tap_button(chat, quick_actions(consent)[1], expect=2)  # 同意しない, from the consent message
    assert stale["text"] == STALE_ANSWER_BELOW and again["text"] == ask_gender["text"]
    assert (await flow_row(kizuna, user.user_id)).state == "registration.gender"
    # The current question's buttons answer it.
    female = quick_actions(ask_gender)[0]
    assert (female["displayText"], female["data"]) == ("女性", "action=step&state=registration.gender&value=female")
    [ask_prefecture] = await tap_button(chat, female)
    tokyo = next(a for a in quick_actions(ask_prefecture) if a["label"] == "東京都")
    [ask_phone] = await tap_button(chat, tokyo)
    skip = quick_actions(ask_phone)[-1]
    await tap_button(chat, skip)
    [ask_marketing] = await chat.say("スキップ")
    [card] = await tap_button(chat, quick_actions(ask_marketing)[1])  # 受け取らない
    assert flex_rows(card)["都道府県"] == "東京都" and flex_rows(card)["電話番号"] == "未登録"
    assert flex_rows(card)["性別"] == "女性" and flex_rows(card)["お知らせの配信"] == "受け取らない"
    # The list of fields to change still works from the card it follows.
    [which] = await tap_button(chat, flex_buttons(card)[1])
    [back] = [a for a in quick_actions(which) if a["label"] == "戻る"]
    [card_again] = await tap_button(chat, back)
    [ask_email] = await tap_button(chat, next(a for a in quick_actions(which) if a["label"] == "メールアドレス"))
    assert ask_email["text"].startswith("メールアドレスを教えてください")
    assert await stale_rows(kizuna, user.user_id) == [{"state": "registration.consent", "current": "registration.gender"}]


async def test_an_old_list_of_details_to_change(kizuna):
    chat, customer = await make_registered(kizuna, kizuna.emulator)
    [which] = await chat.tap("action=profile_edit")
    phone = next(a for a in quick_actions(which) if a["label"] == "電話番号")
    await tap_button(chat, phone)
    await chat.say("03-1234-5678", expect=2)  # saved; the member card follows
    [reply] = await tap_button(chat, phone)
    assert reply["text"] == "こちらのボタンは受付を終了しました。登録内容を変更する場合は、「登録内容を変更する」をタップしてください。"
    assert [a["data"] for a in quick_actions(reply)] == ["action=profile_edit"]
