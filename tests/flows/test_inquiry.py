"""Answering inquiries end to end (issue 4): signed webhooks from the emulator in, replies
captured at the emulator, the FAQ and rules edited through the REST API. Same tests on
SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest

from kizuna.bot.keys import SESSIONS, WORKER
from kizuna.flows.engine import Flow, FlowContext, Goto, Keyword, Retry, State
from kizuna.storage import conversations, customers, faq as faq_store
from kizuna.storage.db import transaction
from kizuna.storage.types import utcnow
from tests.conftest import SHARED_FAQ, Kizuna, start_kizuna

FAQ_CSV = SHARED_FAQ / "cosmetics_faq.csv"
FAQ_ENTRIES = faq_store.parse_csv(FAQ_CSV.read_bytes()).entries
ANSWERS = {entry.id: entry.answer for entry in FAQ_ENTRIES}
QUESTIONS = {entry.id: entry.question for entry in FAQ_ENTRIES}
JST = timezone(timedelta(hours=9))
HANDOFF = "担当者と話す"
SOLVED, NOT_SOLVED = "解決しました", "解決しませんでした"
RECEIPT = "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"
APOLOGY = "申し訳ございません。そのご質問には、自動応答ではお答えできませんでした。"


# -- helpers -----------------------------------------------------------------------------------


class Chat:
    """One customer: each call sends one event and returns exactly the `expect` replies it caused."""

    def __init__(self, emulator, name: str = "お客さま") -> None:
        self.emulator = emulator
        self.user_id = emulator.add_user(display_name=name, language="ja").user_id

    async def _replies(self, send, expect: int) -> list[dict]:
        before = len(self.emulator.messages_to(self.user_id))
        result = await send
        assert result.status == 200, result
        delivered = await self.emulator.wait_for_messages(self.user_id, before + expect, timeout=15)
        new = delivered[before:]
        assert len(new) == expect, [m.message for m in new]
        return [m.message for m in new]

    async def say(self, text: str, expect: int = 1) -> list[dict]:
        return await self._replies(self.emulator.send_text(self.user_id, text), expect)

    async def tap(self, action: dict, expect: int = 1) -> list[dict]:
        """Tap a quick reply's postback action (as LINE sends it: the data, not the displayText)."""
        assert action["type"] == "postback"
        return await self._replies(self.emulator.send_postback(self.user_id, data=action["data"],
                                                               display_text=action.get("displayText")), expect)


def quick_actions(message: dict) -> list[dict]:
    return [item["action"] for item in (message.get("quickReply") or {}).get("items", [])]


def data_of(action: dict) -> dict:
    return dict(parse_qsl(action["data"]))


async def import_faq(kizuna: Kizuna, body: bytes | None = None, query: str = "") -> tuple[int, dict]:
    """POST a CSV body (default: the cosmetics FAQ) to /api/v1/faq/import."""
    import aiohttp

    headers = {"Authorization": f"Bearer {kizuna.admin_token}", "Content-Type": "text/csv; charset=utf-8"}
    async with aiohttp.ClientSession() as client:
        async with client.post(kizuna.url + "/api/v1/faq/import" + query, headers=headers,
                               data=body if body is not None else FAQ_CSV.read_bytes()) as response:
            return response.status, await response.json()


def services_of(server):
    return server.app[WORKER].processor.services


async def sys_rows(kizuna: Kizuna, user_id: str, prefix: str = "inquiry.") -> list[dict]:
    return [row for row in await kizuna.timeline(user_id) if row["direction"] == "sys" and row["kind"].startswith(prefix)]


@pytest.fixture
async def shop(kizuna) -> Kizuna:
    """Kizuna with the cosmetics FAQ imported through the API."""
    status, body = await import_faq(kizuna)
    assert status == 200, body
    assert len(body["created"]) == len(ANSWERS)
    return kizuna


# -- answering -----------------------------------------------------------------------------------


DEV_QUESTIONS = [  # from the dev set, in the customer's words
    ("送料かかりますか", "shipping_fee"),
    ("何日くらいで届きますか", "delivery_days"),
    ("返品したいんですが可能ですか", "returns"),
    ("PayPay使えますか", "payment"),
    ("大阪にお店ありますか", "stores"),
    ("パスワード忘れた", "password"),
]


async def test_questions_get_the_exact_answer_with_the_feedback_on_it(shop):
    """One bubble per answer: 「解決しましたか」 is asked by the answer's own quick replies
    (the defect: a second bubble after every answer doubled the chat)."""
    chat = Chat(shop.emulator)
    for question, faq_id in DEV_QUESTIONS:
        [answer] = await chat.say(question)  # exactly one message
        assert answer["text"] == ANSWERS[faq_id], question
        yes, no, *runner_ups = quick_actions(answer)
        assert (yes["label"], yes["displayText"], no["label"], no["displayText"]) == (SOLVED, SOLVED, NOT_SOLVED, NOT_SOLVED)
        assert data_of(yes) == {"action": "faq_feedback", "faq": faq_id, "value": "yes"}
        assert data_of(no) == {"action": "faq_feedback", "faq": faq_id, "value": "no"}
        assert all(data_of(other)["action"] == "faq" for other in runner_ups) and len(quick_actions(answer)) <= 13
    rows = await sys_rows(shop, chat.user_id)
    assert [(row["kind"], row["payload"]["faq_id"], row["text"]) for row in rows] == [
        ("inquiry.answered", faq_id, question) for question, faq_id in DEV_QUESTIONS
    ]
    first = rows[0]["payload"]
    assert first["outcome"] == "answer" and first["via"] == "faq" and 0 < first["score"] <= 1
    assert first["candidates"][0] == {"faq_id": "shipping_fee", "score": first["score"], "matched_text": "送料はいくらですか"}


def thirty_dev_questions() -> list[tuple[str, str]]:
    """Thirty customer messages of the dev set, each asking a different FAQ entry, in the
    customer's words (会員をやめたいです is left out: it is offered as a choice with 会員登録)."""
    seen: dict[str, str] = {}
    with open(FAQ_CSV.parent / "cosmetics_dev_queries.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            faq_id = row["expected_id"]
            if faq_id and faq_id != "withdraw" and faq_id not in seen.values():
                seen[row["query"]] = faq_id
    return list(seen.items())[:30]


async def test_a_customer_asks_thirty_questions_in_their_own_words(shop):
    chat = Chat(shop.emulator)
    questions = thirty_dev_questions()
    assert len(questions) == 30
    got = []
    for question, faq_id in questions:
        [answer] = await chat.say(question)
        assert quick_actions(answer)[0]["label"] == SOLVED
        got.append((question, answer["text"]))
    assert got == [(question, ANSWERS[faq_id]) for question, faq_id in questions]
    rows = await sys_rows(shop, chat.user_id)
    assert [(row["kind"], row["payload"]["faq_id"]) for row in rows] == [("inquiry.answered", f) for _, f in questions]


async def test_feedback_is_recorded_and_no_offers_a_person(shop):
    chat = Chat(shop.emulator)
    [answer] = await chat.say("領収書がほしいです")
    yes, no, *_others = quick_actions(answer)
    [thanks] = await chat.tap(yes)
    assert thanks["text"] == "お役に立ててよかったです。ほかにもご質問があれば、お気軽にお送りください。"

    [answer] = await chat.say("ポイントっていつまで使えますか")
    [sorry] = await chat.tap(quick_actions(answer)[1])
    assert sorry["text"].startswith("お役に立てず申し訳ございません。")
    [handoff] = quick_actions(sorry)
    assert (handoff["label"], data_of(handoff)) == (HANDOFF, {"action": "handoff"})
    [connected] = await chat.tap(handoff)
    assert connected["text"] == "担当者におつなぎします。順番にご返信しますので、このままお待ちください。"

    feedback = await sys_rows(shop, chat.user_id, "inquiry.feedback")
    assert [row["payload"] for row in feedback] == [{"faq_id": "receipt", "value": "yes"},
                                                   {"faq_id": "point_expiry", "value": "no"}]
    [requested] = await sys_rows(shop, chat.user_id, "conversation.")
    assert requested["kind"] == "conversation.bot_handoff"
    assert {key: requested["payload"][key] for key in ("reason", "how")} == {"reason": "button", "how": "opened"}


async def test_a_vague_question_offers_choices_and_a_tap_answers_it(shop):
    chat = Chat(shop.emulator)
    [choose] = await chat.say("クーポンのこと")  # (「クーポン」 alone is the coupons command)
    actions = quick_actions(choose)
    offered = [data_of(action).get("faq") for action in actions[:-1]]
    assert set(offered) <= {"coupon_use", "coupon_expiry", "coupon_combine"} and 2 <= len(offered) <= 3
    assert choose["text"].splitlines()[0] == "お問い合わせの内容に近いものをお選びください。"
    for faq_id, line in zip(offered, choose["text"].splitlines()[1:]):
        assert line == "・" + QUESTIONS[faq_id]  # the full question in the text
    for action, faq_id in zip(actions, offered):
        assert len(action["label"]) <= 20 and action["displayText"] == QUESTIONS[faq_id]
    assert actions[-1]["label"] == HANDOFF

    pick = actions[offered.index("coupon_expiry")] if "coupon_expiry" in offered else actions[1]
    [answer] = await chat.tap(pick)
    assert answer["text"] == ANSWERS[data_of(pick)["faq"]]
    assert quick_actions(answer)[0]["label"] == SOLVED
    kinds = [(row["kind"], row["payload"].get("via")) for row in await sys_rows(shop, chat.user_id)]
    assert kinds == [("inquiry.disambiguated", "faq"), ("inquiry.answered", "choice")]


async def test_small_talk_gets_a_friendly_line_never_an_apology(shop):
    """The defect: 「今日は暑いですね〜」 got 「そのご質問にはお答えできませんでした」."""
    chat = Chat(shop.emulator)
    for text in ("ありがとう", "今日は暑いですね〜", "今日はいい天気ですね", "了解です", "料理がとてもおいしかったです", "😊"):
        [reply] = await chat.say(text)
        assert reply["text"] == "メッセージありがとうございます！ご質問があれば、いつでもお気軽にお送りください。", text
        assert "quickReply" not in reply and "お答えできません" not in reply["text"]
    kinds = [row["kind"] for row in await sys_rows(shop, chat.user_id)]
    assert kinds == ["inquiry.smalltalk"] * 6
    assert (await shop.api("GET", "/api/v1/faq/unanswered"))[1]["items"] == []  # small talk is no FAQ gap


async def test_unrelated_questions_get_an_apology_and_the_second_in_a_row_a_person(shop):
    chat = Chat(shop.emulator)
    [reply] = await chat.say("おすすめの映画を教えて")
    assert reply["text"].startswith(APOLOGY) and reply["text"] not in ANSWERS.values()
    assert [a["label"] for a in quick_actions(reply)] == [HANDOFF]
    # An answer ends the run ...
    [answer] = await chat.say("送料かかりますか")
    assert answer["text"] == ANSWERS["shipping_fee"]
    [reply] = await chat.say("株価はどうなりますか")
    assert reply["text"].startswith(APOLOGY)  # the first of a new run
    # ... small talk neither ends nor extends it.
    [thanks] = await chat.say("了解です")
    assert thanks["text"].startswith("メッセージありがとうございます！")
    # The second unanswered question in a row: a person, instead of another apology.
    [connected] = await chat.say("おすすめの映画を教えて")
    assert connected["text"] == "担当者におつなぎします。順番にご返信しますので、このままお待ちください。"
    rows = await sys_rows(shop, chat.user_id, "")
    unanswered = [row for row in rows if row["kind"] == "inquiry.unanswered"]
    assert [row["payload"].get("handoff") for row in unanswered] == [None, None, True]
    [handoff] = [row for row in rows if row["kind"] == "conversation.bot_handoff"]
    assert handoff["payload"]["reason"] == "unanswered"
    async with shop.sessions() as session:
        conversation = await conversations.active_for(session, await shop.customer_id(chat.user_id))
    assert (conversation.status, conversation.reason) == ("pending", "unanswered")

    status, report = await shop.api("GET", "/api/v1/faq/unanswered")
    assert status == 200
    assert [(item["text"], item["count"], item["customers"]) for item in report["items"]] == [
        ("おすすめの映画を教えて", 2, 1), ("株価はどうなりますか", 1, 1)]


async def test_the_unanswered_rule_is_a_setting(shop):
    status, body = await shop.api("PUT", "/api/v1/inquiry-settings", json={"unanswered_handoff_after": 3})
    assert status == 200 and body["unanswered_handoff_after"] == 3
    chat = Chat(shop.emulator)
    for text in ("おすすめの映画を教えて", "株価はどうなりますか"):
        [reply] = await chat.say(text)
        assert reply["text"].startswith(APOLOGY)
    [connected] = await chat.say("野球の結果を教えて")
    assert connected["text"].startswith("担当者におつなぎします")

    assert (await shop.api("PUT", "/api/v1/inquiry-settings", json={"unanswered_handoff_after": 0}))[0] == 200
    never = Chat(shop.emulator)
    for text in ("おすすめの映画を教えて", "株価はどうなりますか", "野球の結果を教えて", "おすすめの映画を教えて"):
        [reply] = await never.say(text)
        assert reply["text"].startswith(APOLOGY)
    assert [row for row in await sys_rows(shop, never.user_id, "conversation.")] == []


async def test_handoff_words_and_the_inquiry_menu(shop):
    chat = Chat(shop.emulator)
    [prompt] = await chat.tap({"type": "postback", "data": "action=inquiry"})
    assert prompt["text"].startswith("ご質問をこのトークにお送りください")
    assert [a["label"] for a in quick_actions(prompt)] == [HANDOFF]
    [connected] = await chat.say("担当者")
    assert connected["text"].startswith("担当者におつなぎします")
    [row] = await sys_rows(shop, chat.user_id, "conversation.")
    assert row["payload"]["reason"] == "keyword"


async def test_without_an_faq_the_bot_sends_its_plain_receipt(kizuna):
    chat = Chat(kizuna.emulator)
    [reply] = await chat.say("送料はいくらですか")
    assert reply["text"] == RECEIPT
    assert await sys_rows(kizuna, chat.user_id) == []


# -- changes without a restart, on every process -------------------------------------------------


async def _ask_directly(server, line_user_id: str, text: str) -> list[dict]:
    """What this process's answerer replies, inside a transaction of its own (as an event)."""
    services = services_of(server)
    async with transaction(server.app[SESSIONS]) as session:
        customer = await customers.get_by_line_user_id(session, line_user_id)
        ctx = FlowContext(session=session, customer=customer, now=utcnow(), replies=[], services=services)
        assert await services.inquiries.answer(ctx, text)
        return ctx.replies


async def test_an_edit_changes_the_next_answer_on_every_instance(shop, settings):
    chat = Chat(shop.emulator)
    [answer] = await chat.say("送料かかりますか")
    assert answer["text"] == ANSWERS["shipping_fee"]

    second, _token = await start_kizuna(settings, shop.emulator)  # another process on the same database
    try:
        replies = await _ask_directly(second, chat.user_id, "送料かかりますか")
        assert replies[0]["text"] == ANSWERS["shipping_fee"]
        before = (services_of(shop.server).inquiries.rebuilds, services_of(second).inquiries.rebuilds)

        new = "送料は全国一律500円です。\n3,000円以上で無料!"
        status, body = await shop.api("PUT", "/api/v1/faq/shipping_fee", json={"answer": new})
        assert status == 200 and body["answer"] == new
        for server in (shop.server, second):
            replies = await _ask_directly(server, chat.user_id, "送料かかりますか")
            assert replies[0]["text"] == new
        after = (services_of(shop.server).inquiries.rebuilds, services_of(second).inquiries.rebuilds)
        assert after == (before[0] + 1, before[1] + 1)

        # and through LINE, whichever instance takes the event
        [answer] = await chat.say("送料かかりますか")
        assert answer["text"] == new

        # a new entry and a disabled one
        status, _ = await shop.api("POST", "/api/v1/faq", json={
            "id": "parking", "question": "駐車場はありますか", "answer": "提携駐車場があります。", "alternates": ["車で行けますか"]})
        assert status == 201
        await shop.api("PUT", "/api/v1/faq/shipping_fee", json={"enabled": False})
        for server in (shop.server, second):
            assert (await _ask_directly(server, chat.user_id, "駐車場ある?"))[0]["text"] == "提携駐車場があります。"
            assert ANSWERS["shipping_fee"] not in [m["text"] for m in await _ask_directly(server, chat.user_id, "送料かかりますか")]
    finally:
        await second.close()


# -- keyword rules -----------------------------------------------------------------------------


async def test_keyword_rules_come_before_the_faq(shop):
    rules = [
        {"match_type": "exact", "pattern": "営業時間", "reply_text": "本日は10時から20時まで営業しています。"},
        {"match_type": "contains", "pattern": "送料", "reply_text": "送料のご案内ルール", "priority": 10},
        {"match_type": "contains", "pattern": "送料無料", "reply_text": "送料無料キャンペーン中!", "priority": 20},
        {"match_type": "regex", "pattern": r"\d{3}-\d{4}", "reply_text": "郵便番号をありがとうございます。"},
        {"match_type": "exact", "pattern": "入会", "flow_action": "register", "name": "入会 -> 会員登録"},
    ]
    for rule in rules:
        status, body = await shop.api("POST", "/api/v1/keyword-rules", json=rule)
        assert status == 201, body
    status, listed = await shop.api("GET", "/api/v1/keyword-rules")
    assert [item["priority"] for item in listed["items"]][:2] == [20, 10]

    chat = Chat(shop.emulator)
    assert (await chat.say("営業時間"))[0]["text"] == "本日は10時から20時まで営業しています。"
    assert (await chat.say("ＥＩＧＹＯ"))[0]["text"] != "本日は10時から20時まで営業しています。"  # not a rule
    assert (await chat.say("送料無料の条件は?"))[0]["text"] == "送料無料キャンペーン中!"
    assert (await chat.say("送料いくら"))[0]["text"] == "送料のご案内ルール"
    assert (await chat.say("〒１５０－０００１ です"))[0]["text"] == "郵便番号をありがとうございます。"  # NFKC
    await chat.say("入会")
    timeline = await shop.timeline(chat.user_id)
    assert any(row["kind"] == "flow.started" and row["payload"] == {"flow": "registration"} for row in timeline)
    answered = [row["payload"] for row in timeline if row["kind"] == "inquiry.answered"]
    assert answered[-1]["via"] == "keyword_rule" and answered[-1]["flow_action"] == "register"

    # a disabled rule stops matching; the FAQ answers again
    rule_id = next(item["id"] for item in listed["items"] if item["pattern"] == "営業時間")
    status, _ = await shop.api("PUT", f"/api/v1/keyword-rules/{rule_id}", json={"enabled": False})
    assert status == 200
    other = Chat(shop.emulator)
    [answer] = await other.say("営業時間")
    assert answer["text"] == ANSWERS["hours"]
    assert (await shop.api("DELETE", f"/api/v1/keyword-rules/{rule_id}"))[0] == 200
    assert (await shop.api("GET", f"/api/v1/keyword-rules/{rule_id}"))[0] == 404


BAD_RULES = [
    ({"match_type": "regex", "pattern": "(a+)+$", "reply_text": "x"}, "pattern"),
    ({"match_type": "regex", "pattern": "(a|ab)*c", "reply_text": "x"}, "pattern"),
    ({"match_type": "regex", "pattern": ".*送料.*無料", "reply_text": "x"}, "pattern"),
    ({"match_type": "regex", "pattern": r"\w+\s*\w+", "reply_text": "x"}, "pattern"),
    ({"match_type": "regex", "pattern": "(", "reply_text": "x"}, "pattern"),
    ({"match_type": "regex", "pattern": "x" * 201, "reply_text": "x"}, "pattern"),
    ({"match_type": "fuzzy", "pattern": "a", "reply_text": "x"}, "match_type"),
    ({"match_type": "exact", "pattern": "a"}, "reply_text"),
    ({"match_type": "exact", "pattern": "a", "reply_text": "x", "flow_action": "register"}, "reply_text"),
    ({"match_type": "exact", "pattern": "a", "flow_action": "no_such_flow"}, "flow_action"),
    ({"match_type": "exact", "pattern": "a", "reply_text": "x", "colour": "red"}, "colour"),
]


async def test_bad_keyword_rules_are_refused(kizuna):
    for rule, field in BAD_RULES:
        status, body = await kizuna.api("POST", "/api/v1/keyword-rules", json=rule)
        assert status == 400, (rule, body)
        assert body["error"]["field"] == field, rule
    assert (await kizuna.api("GET", "/api/v1/keyword-rules"))[1]["items"] == []
    status, rule = await kizuna.api("POST", "/api/v1/keyword-rules", json={"match_type": "exact", "pattern": "a", "reply_text": "x"})
    assert status == 201
    status, body = await kizuna.api("PUT", f"/api/v1/keyword-rules/{rule['id']}", json={"match_type": "regex", "pattern": "(a+)+"})
    assert status == 400 and body["error"]["field"] == "pattern"
    status, body = await kizuna.api("PUT", f"/api/v1/keyword-rules/{rule['id']}", json={"reply_text": None})
    assert status == 400 and body["error"]["field"] == "reply_text"
    assert (await kizuna.api("GET", f"/api/v1/keyword-rules/{rule['id']}"))[1]["pattern"] == "a"


# -- business hours ------------------------------------------------------------------------------


WEEKDAYS_10_TO_19 = {day: [["10:00", "19:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


async def test_outside_business_hours_the_handoff_says_when_a_person_replies(shop):
    status, hours = await shop.api("PUT", "/api/v1/business-hours", json={
        "weekly": {**WEEKDAYS_10_TO_19, "sat": [["10:00", "13:00"], ["14:00", "17:00"]]}, "holidays": ["2026-12-07"]})
    assert status == 200, hours
    assert hours["configured"] and hours["timezone"] == "Asia/Tokyo" and hours["weekly"]["sun"] == []
    services = services_of(shop.server)

    async def handoff_at(*moment) -> tuple[dict, dict]:
        """A new customer asks a question the FAQ cannot answer, then taps 担当者と話す."""
        services.clock = lambda: datetime(*moment, tzinfo=JST)
        chat = Chat(shop.emulator)
        [offer] = await chat.say("株価はどうなりますか")
        [connected] = await chat.tap(quick_actions(offer)[0])
        return offer, connected

    # Saturday evening; Sunday closed, Monday a holiday. The offer promises nothing: only
    # the handoff says when a person will answer.
    offer, connected = await handoff_at(2026, 12, 5, 18, 30)
    assert "営業時間外" not in offer["text"]
    assert connected["text"] == "ただいま営業時間外です。翌営業日 12月8日（火） 10:00以降、担当者から順番にご返信します。"
    # Tuesday before opening; Saturday lunch break.
    assert (await handoff_at(2026, 12, 8, 7, 5))[1]["text"] == "ただいま営業時間外です。本日 10:00以降、担当者から順番にご返信します。"
    assert "本日 14:00以降" in (await handoff_at(2026, 12, 5, 13, 30))[1]["text"]
    # Open: a person answers now.
    assert (await handoff_at(2026, 12, 8, 10, 0))[1]["text"].startswith("担当者におつなぎします")
    # Hours cleared: always open again.
    assert (await shop.api("PUT", "/api/v1/business-hours", json={"weekly": None}))[1]["configured"] is False
    assert (await handoff_at(2026, 12, 6, 3, 0))[1]["text"].startswith("担当者におつなぎします")


BAD_HOURS = [
    {"weekly": {"mon": [["10:00", "09:00"]]}},
    {"weekly": {"mon": [["10:00", "25:00"]]}},
    {"weekly": {"mon": [["10:00", "14:00"], ["13:00", "15:00"]]}},
    {"weekly": {"monday": [["10:00", "19:00"]]}},
    {"weekly": {"mon": [["10時", "19時"]]}},
    {"weekly": WEEKDAYS_10_TO_19, "holidays": ["12/31"]},
]


async def test_bad_business_hours_are_refused(kizuna):
    for body in BAD_HOURS:
        status, error = await kizuna.api("PUT", "/api/v1/business-hours", json=body)
        assert status == 400, (body, error)
        assert error["error"]["field"] == ("holidays" if "holidays" in body else "weekly"), error
    assert (await kizuna.api("GET", "/api/v1/business-hours"))[1]["configured"] is False


# -- a question in the middle of a flow ----------------------------------------------------------


async def _ask_size(ctx, data):
    await ctx.reply_text("received")  # any prompt: the test only needs to see it again
    ctx.reply({"type": "text", "text": "サイズを S / M / L でお答えください。"})


async def _on_size(ctx, event, data):
    if event.kind == "text" and (event.text or "").strip().upper() in ("S", "M", "L"):
        data["size"] = event.text.strip().upper()
        return Goto("sizing.done")
    return Retry("S / M / L のどれかでお答えください。")


async def _ask_done(ctx, data):
    ctx.reply({"type": "text", "text": f"サイズ {data['size']} で承りました。"})


async def _on_done(ctx, event, data):
    return Retry()


SIZING = Flow(name="sizing", entry_points=(Keyword("サイズ相談"),),
              states=(State("sizing.size", prompt=_ask_size, on_input=_on_size),
                      State("sizing.done", prompt=_ask_done, on_input=_on_done)))


async def test_a_question_mid_flow_is_answered_and_the_flow_asks_again(settings, emulator, monkeypatch):
    import kizuna.bot.app as app_module

    real = app_module.all_flows
    monkeypatch.setattr(app_module, "all_flows", lambda: [*real(), SIZING])
    server, token = await start_kizuna(settings, emulator)
    kizuna = Kizuna(server=server, emulator=emulator, settings=settings, admin_token=token)
    try:
        assert (await import_faq(kizuna))[0] == 200
        chat = Chat(emulator)
        await chat.say("サイズ相談", expect=2)
        answer, again, question = await chat.say("送料っていくらかかりますか?", expect=3)
        assert answer["text"] == ANSWERS["shipping_fee"]
        assert "quickReply" not in answer  # the flow's question comes last
        assert question["text"] == "サイズを S / M / L でお答えください。"
        # not a confident FAQ match: the flow's own correction, no FAQ answer
        wrong, _again, question = await chat.say("おすすめの映画を教えて", expect=3)
        assert wrong["text"] == "S / M / L のどれかでお答えください。"
        [done] = await chat.say("m")
        assert done["text"] == "サイズ M で承りました。"
        rows = await sys_rows(kizuna, chat.user_id)
        assert [(row["kind"], row["payload"]["via"], row["payload"]["faq_id"]) for row in rows] == [
            ("inquiry.answered", "flow", "shipping_fee")]
    finally:
        await server.close()


# -- complaints ------------------------------------------------------------------------------

HANDED = "担当者におつなぎします。順番にご返信しますので、このままお待ちください。"
SORRY = "ご不便・ご不快な思いをおかけし、大変申し訳ございません。"


async def _conversation(kizuna: Kizuna, user_id: str):
    async with kizuna.sessions() as session:
        return await conversations.active_for(session, await kizuna.customer_id(user_id))


async def test_a_complaint_is_apologised_for_and_handed_to_a_person(shop):
    """The defect: 「店員さんの態度がひどかったです」 got 「そのご質問にはお答えできませんでした」."""
    chat = Chat(shop.emulator)
    apology, connected = await chat.say("店員さんの態度がひどかったです", expect=2)
    assert (apology["text"], connected["text"]) == (SORRY, HANDED)
    [complaint] = await sys_rows(shop, chat.user_id, "inquiry.complaint")
    assert complaint["text"] == "店員さんの態度がひどかったです"
    assert complaint["payload"]["outcome"] == "complaint" and "bad_manner" in complaint["payload"]["kinds"]
    [handoff] = await sys_rows(shop, chat.user_id, "conversation.bot_handoff")
    assert handoff["payload"]["reason"] == "complaint"
    conversation = await _conversation(shop, chat.user_id)
    assert (conversation.status, conversation.reason) == ("pending", "complaint")
    assert await sys_rows(shop, chat.user_id, "inquiry.unanswered") == []  # not an FAQ gap


async def test_a_complaint_the_faq_has_an_answer_for_gets_it_too(shop):
    """A shop's entry for the very problem says what a person will need (a photo, the order
    number): sent with the handoff, and not apologised for twice."""
    chat = Chat(shop.emulator)
    answer, connected = await chat.say("届いた商品が壊れていました", expect=2)
    assert answer["text"] == ANSWERS["damaged"] and answer["text"].startswith("大変申し訳ございません")
    assert "quickReply" not in answer and connected["text"] == HANDED
    [complaint] = await sys_rows(shop, chat.user_id, "inquiry.complaint")
    assert complaint["payload"]["faq_id"] == "damaged"

    other = Chat(shop.emulator)
    apology, answer, connected = await other.say("返金してほしいです", expect=3)
    assert (apology["text"], answer["text"], connected["text"]) == (SORRY, ANSWERS["returns"], HANDED)

    # Not sure which entry: the close ones are one tap away while the customer waits.
    third = Chat(shop.emulator)
    apology, connected = await third.say("注文と違う商品が届きました", expect=2)
    assert (apology["text"], connected["text"]) == (SORRY, HANDED) and "quickReply" not in apology
    offered = [data_of(action)["faq"] for action in quick_actions(connected)]
    assert "damaged" in offered and 2 <= len(offered) <= 3
    [damaged] = await third.tap(quick_actions(connected)[offered.index("damaged")])  # a tap works while a person owns the chat
    assert damaged["text"] == ANSWERS["damaged"]
    assert (await _conversation(shop, third.user_id)).status == "pending"


async def test_a_question_with_a_negative_word_is_no_complaint(shop):
    chat = Chat(shop.emulator)
    for text in ("肌荒れがひどいのですが使えますか", "届いた商品が壊れていたらどうすればいいですか", "返金はできますか"):
        [reply] = await chat.say(text)
        assert reply["text"] != SORRY, text
    assert await sys_rows(shop, chat.user_id, "inquiry.complaint") == []
    assert await _conversation(shop, chat.user_id) is None


async def test_a_complaint_reaches_a_person_without_an_faq_too(kizuna):
    chat = Chat(kizuna.emulator)
    apology, connected = await chat.say("最悪です。二度と行きません", expect=2)
    assert (apology["text"], connected["text"]) == (SORRY, HANDED)
    assert (await _conversation(kizuna, chat.user_id)).reason == "complaint"


# -- stickers, photos and old buttons ----------------------------------------------------------


async def test_stickers_and_photos_get_their_own_word(kizuna):
    """The defect: 「メッセージを受け付けました。」 for a sticker."""
    chat = Chat(kizuna.emulator)
    [sticker] = await chat._replies(kizuna.emulator.send_sticker(chat.user_id), 1)
    assert sticker["text"].startswith("スタンプありがとうございます！")
    [photo] = await chat._replies(kizuna.emulator.send_image(chat.user_id), 1)
    assert photo["text"].startswith("お送りいただき、ありがとうございます。") and "「担当者」" in photo["text"]


async def test_a_choice_whose_entry_is_gone_says_the_button_is_old(shop):
    chat = Chat(shop.emulator)
    [choose] = await chat.say("クーポンのこと")
    pick = quick_actions(choose)[0]
    status, _ = await shop.api("PUT", f"/api/v1/faq/{data_of(pick)['faq']}", json={"enabled": False})
    assert status == 200
    [old] = await chat.tap(pick)
    assert old["text"] == "こちらのボタンは受付を終了しました。お手数ですが、ご質問をもう一度メッセージでお送りください。"
    assert [a["label"] for a in quick_actions(old)] == [HANDOFF]
    gone = (await sys_rows(shop, chat.user_id))[-1]
    assert (gone["kind"], gone["payload"]["outcome"]) == ("inquiry.unanswered", "gone")
