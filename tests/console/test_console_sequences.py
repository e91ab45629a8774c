"""ステップ配信 in the console over real HTTP (the LINE emulator as LINE, the workers running): a
marketer builds a three-step sequence with the editor's form (the steps on a timeline), it starts
for a customer and reaches them in the emulator, the clock moves (never a sleep) and the next step
follows; the sequence's page counts per step what was sent, the orders attributed and the exits;
an edit keeps enrolled customers in their place; the form's refusals are shown beside the step
they name and nothing is saved; support staff are refused."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import sqlalchemy as sa

from kizuna.appkeys import SERVICES
from kizuna.campaigns import sequences as service
from kizuna.storage import sequences as store
from kizuna.storage.db import transaction
from kizuna.storage.models import SequenceEnrolment, StepSequence
from kizuna.storage.types import utcnow
from tests.conftest import eventually
from tests.console.test_console_campaigns import befriend, marketer


def editor_form(**fields) -> dict:
    """The editor's form as a browser posts it: an api_event trigger and three steps (day 0, 3, 7)."""
    form = {"name": "カゴ落ちフォロー", "trigger": "api_event", "trigger_event": "cart_abandoned", "name_fallback": "お客様",
            "steps": "3", "action": "save",
            "s0_from": "enrolment", "s0_days": "0", "s0_hours": "0", "s0m_slots": "1", "s0m0_type": "text",
            "s0m0_text": "{name}さん、カートに商品が残っています (day 0)",
            "s1_from": "previous", "s1_days": "3", "s1_hours": "0", "s1m_slots": "2", "s1m0_type": "text", "s1m0_text": "まだ迷っていますか？ (day 3)",
            "s1m1_type": "image", "s1m1_image": "https://example.com/item.jpg",
            "s2_from": "enrolment", "s2_days": "7", "s2_hours": "0", "s2m_slots": "1", "s2m0_type": "text", "s2m0_text": "最後のご案内 (day 7)"}
    form.update(fields)
    return form


async def stored(console) -> list[StepSequence]:
    async with console.sessions() as session:
        return list((await session.execute(sa.select(StepSequence).order_by(StepSequence.id))).scalars())


def texts_to(console, user) -> list[str]:
    return [m.message.get("text") or "" for m in console.kizuna.emulator.messages_to(user.user_id) if m.via == "push"]


async def event(console, user, kind: str = "cart_abandoned") -> None:
    status, body = await console.kizuna.api("POST", "/api/v1/events", json={"customer": {"line_user_id": user.user_id}, "type": kind})
    assert status in (200, 201), body


async def order(console, user, external_id: str, total: int, at=None) -> None:
    status, body = await console.kizuna.api("POST", "/api/v1/orders", json={
        "external_id": external_id, "line_user_id": user.user_id, "ordered_at": (at or utcnow()).isoformat(), "total": total})
    assert status == 200, body


async def test_a_marketer_builds_a_three_step_sequence_and_its_page_counts_each_step(console):
    hanako, = await befriend(console, "花子")
    browser = await marketer(console)
    response, page = await browser.get("/console/sequences")
    assert response.status == 200 and "ステップ配信はまだありません" in page and 'href="/console/sequences"' in page

    # The editor draws the steps as a timeline: day 0, day 3 (3 days after step 1), day 7 (after entry).
    response, page = await browser.post("/console/sequences/new", editor_form(action="refresh"))
    assert response.status == 200
    assert [html.unescape(w) for w in re.findall(r'data-step-when>([^<]+)<', page)] == ["開始直後", "3日後", "7日後"]
    assert page.count('class="tl-step"') == 3 and "3日後" in page and "4日後" in page  # the gaps drawn between steps

    response, _ = await browser.post("/console/sequences/new", editor_form())
    assert response.status == 303, await response.text()
    [sequence] = await stored(console)
    assert (sequence.trigger, sequence.trigger_value, sequence.status) == ("api_event", "cart_abandoned", "active")
    assert [(s["delay_minutes"], s["delay_from"]) for s in sequence.steps] == [(0, "enrolment"), (3 * 1440, "previous"), (7 * 1440, "enrolment")]
    assert sequence.steps[1]["messages"][1] == {"type": "image", "originalContentUrl": "https://example.com/item.jpg",
                                                "previewImageUrl": "https://example.com/item.jpg"}
    assert response.headers["Location"].endswith(f"/console/sequences/{sequence.id}?notice=created")

    # The event starts it: day 0 reaches 花子 at once (her name filled), through the worker.
    await event(console, hanako)

    async def day_0() -> bool:
        return any("花子さん、カートに商品が残っています" in text for text in texts_to(console, hanako))

    await eventually(day_0, what="day 0 in the emulator")

    def step_sent(index: int):
        async def check() -> bool:
            async with console.sessions() as session:
                return (await store.step_results(session, sequence.id, 3))[index].sent == 1
        return check

    await eventually(step_sent(0), what="step 1 recorded as sent")  # (its sent_at is written after LINE's answer)
    await order(console, hanako, "EC-1", 4800)  # after step 1, before step 2: step 1's
    # Three days later (the services' clock moved) step 2 follows, once.
    console.kizuna.server.app[SERVICES].clock = lambda: utcnow() + timedelta(days=3, minutes=1)

    async def day_3() -> bool:
        return any("まだ迷っていますか" in text for text in texts_to(console, hanako))

    await eventually(day_3, what="day 3 in the emulator")
    await eventually(step_sent(1), what="step 2 recorded as sent")
    await order(console, hanako, "EC-2", 2000)  # after step 2: step 2's

    response, page = await browser.get(f"/console/sequences/{sequence.id}")
    assert response.status == 200

    def cells(step: int) -> dict[str, str]:
        row = page.split(f'data-step-row="{step}"')[1].split("</tr>")[0]
        return dict(re.findall(r'data-cell="(\w+)">([^<]*)', row))

    assert cells(0) == {"reached": "1", "sent": "1", "failed": "0", "clicks": "—", "buyers": "1", "orders": "1", "revenue": "¥4,800",
                        "exits": ""}
    assert (cells(1)["sent"], cells(1)["orders"], cells(1)["revenue"]) == ("1", "1", "¥2,000")
    assert (cells(2)["reached"], cells(2)["sent"], cells(2)["orders"]) == ("1", "0", "0")
    assert 'data-figure="enrolled">1<' in page and 'data-figure="active">1<' in page

    response, page = await browser.get("/console/sequences")
    assert "カゴ落ちフォロー" in page and "イベント「cart_abandoned」が届いたとき" in page
    assert 'data-cell="enrolled">1<' in page and 'data-cell="active">1<' in page

    # In English too: every text of the pages has its translation (a missing one shows as its key).
    await browser.post("/console/language", {"locale": "en", "next": "/console/sequences"})
    for path in ("/console/sequences", f"/console/sequences/{sequence.id}", f"/console/sequences/{sequence.id}/edit", "/console/sequences/new"):
        response, page = await browser.get(path)
        assert response.status == 200 and "Step sequences" in page
        assert not re.findall(r"\b(?:sequences|insight)\.[a-z_]+\.[a-z_.]+", page), path


async def test_editing_keeps_enrolled_customers_in_place_and_completes_those_past_the_new_end(console):
    hanako, taro = await befriend(console, "花子", "太郎")
    browser = await marketer(console)
    response, _ = await browser.post("/console/sequences/new", editor_form())
    [sequence] = await stored(console)
    await event(console, hanako)

    async def sent_once() -> bool:
        async with console.sessions() as session:
            rows = (await session.execute(sa.select(SequenceEnrolment.current_step))).scalars().all()
        return list(rows) == [1]

    await eventually(sent_once, what="hanako's day 0 sent")
    response, page = await browser.get(f"/console/sequences/{sequence.id}/edit")
    assert response.status == 200 and "いま1人が進行中です" in page and "カートに商品が残っています" in page
    assert 'value="7"' in page  # the stored delays are back in the form

    # Down to one step: 花子 has had it, so she is completed; nothing more is sent to her.
    one_step = editor_form(steps="1", name="カゴ落ちフォロー（短縮）")
    response, _ = await browser.post(f"/console/sequences/{sequence.id}/edit", one_step)
    assert response.status == 303
    async with console.sessions() as session:
        [enrolment] = (await session.execute(sa.select(SequenceEnrolment))).scalars().all()
        edited = await session.get(StepSequence, sequence.id)
    assert (enrolment.status, edited.name, len(edited.steps)) == ("completed", "カゴ落ちフォロー（短縮）", 1)

    # A refused edit (a step without messages) changes nothing and shows the refusal at the step.
    response, page = await browser.post(f"/console/sequences/{sequence.id}/edit", editor_form(s1m0_text="", s1m1_image="", s1m1_type="text"))
    assert response.status == 400 and "tl-card-invalid" in page and "メッセージを1つ以上入力してください" in page
    async with console.sessions() as session:
        assert len((await session.get(StepSequence, sequence.id)).steps) == 1


async def test_refusals_are_shown_at_the_field_and_nothing_is_saved(console):
    browser = await marketer(console)
    response, page = await browser.post("/console/sequences/new", editor_form(trigger="tag_added", trigger_event=""))
    assert response.status == 400 and "きっかけの内容" in page
    response, page = await browser.post("/console/sequences/new", editor_form(s2_days="-1"))
    assert response.status == 400 and "待つ日数・時間は0以上の整数で" in page
    response, page = await browser.post("/console/sequences/new", editor_form(s1m0_text="x" * 5001))
    assert response.status == 400 and "このメッセージは送れません" in page and "tl-card-invalid" in page
    response, page = await browser.post("/console/sequences/new", editor_form(name="<script>alert(1)</script>", s0_days="abc"))
    assert response.status == 400 and "<script>alert(1)</script>" not in page
    assert await stored(console) == []


async def test_pause_and_resume_from_the_list_and_support_is_refused(console):
    browser = await marketer(console)
    async with transaction(console.sessions) as session:
        created = await service.create(session, service.SequenceCreate(
            name="登録フォロー", trigger="registered", steps=[{"messages": [{"type": "text", "text": "ようこそ"}]}]), created_by=None, now=utcnow())
    response, _ = await browser.post(f"/console/sequences/{created.id}/pause", {"back": "list"})
    assert response.status == 303 and response.headers["Location"].endswith("/console/sequences?notice=pause")
    response, page = await browser.get("/console/sequences?notice=pause")
    assert "一時停止中" in page and "再開" in page
    [sequence] = await stored(console)
    assert sequence.status == "paused"
    response, _ = await browser.post(f"/console/sequences/{created.id}/resume")
    assert response.status == 303 and (await stored(console))[0].status == "active"
    response, _ = await browser.post(f"/console/sequences/{created.id}/pause", csrf=False)
    assert response.status == 403 and (await stored(console))[0].status == "active"
    response, _ = await browser.get("/console/sequences/999999")
    assert response.status == 404

    support = await console.logged_in(await console.add_staff("support@example.com", "support"))
    for path in ("/console/sequences", f"/console/sequences/{created.id}", "/console/sequences/new"):
        response, _ = await support.get(path)
        assert response.status == 403


async def test_a_sequence_made_by_the_api_keeps_its_minutes_and_coupon_when_edited_in_the_console(console):
    status, coupon = await console.kizuna.api("POST", "/api/v1/coupons", json={
        "title": "10%オフ", "discount_type": "percent", "discount_value": 10, "valid_days": 30})
    assert status == 201, coupon
    status, made = await console.kizuna.api("POST", "/api/v1/sequences", json={
        "name": "カゴ落ち", "trigger": "api_event", "trigger_value": "cart_abandoned", "cancel_on": ["order_completed"],
        "send_window": {"start": "09:00", "end": "21:00"},
        "steps": [{"delay_minutes": 90, "messages": [{"type": "text", "text": "お忘れではありませんか？"}], "coupon_id": coupon["id"]}]})
    assert status == 201, made
    browser = await marketer(console)
    response, page = await browser.get(f"/console/sequences/{made['id']}/edit")
    assert response.status == 200 and 'name="s0_minutes" value="30"' in page and 'name="s0_hours" value="1"' in page
    assert f'<option value="{coupon["id"]}" selected>10%オフ</option>' in page and 'value="order_completed"' in page
    form = {"name": "カゴ落ち", "trigger": "api_event", "trigger_event": "cart_abandoned", "cancel_on": "order_completed",
            "window": "on", "window_start": "09:00", "window_end": "21:00", "name_fallback": "お客様", "steps": "1", "action": "save",
            "s0_days": "0", "s0_hours": "1", "s0_minutes": "30", "s0m_slots": "1", "s0m0_type": "text",
            "s0m0_text": "お忘れではありませんか？", "s0_coupon": str(coupon["id"])}
    response, _ = await browser.post(f"/console/sequences/{made['id']}/edit", form)
    assert response.status == 303
    [sequence] = await stored(console)
    assert sequence.steps == [{"delay_minutes": 90, "delay_from": "enrolment", "messages": [{"type": "text", "text": "お忘れではありませんか？"}],
                               "coupon_id": coupon["id"]}]
    assert (sequence.cancel_on, sequence.window_start, sequence.window_end) == (["order_completed"], "09:00", "21:00")
