"""Step sequences end to end: triggers where the facts happen, steps through the outbox to the LINE
emulator over real HTTP, the clock moved (never slept), exits, send windows, N workers, restarts.

The clock: the worker's sequence job reads `Services.clock` (what the API's views read too), so a
test moves time by setting it; `send_due` takes `now` when a test drives it directly."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import aiohttp
import sqlalchemy as sa

from kizuna.appkeys import SERVICES
from kizuna.campaigns import sequences
from kizuna.storage import audit, customers, friend_sources
from kizuna.storage import sequences as store
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Customer, Delivery, SequenceEnrolment, SequenceTrigger
from kizuna.storage.types import utcnow
from tests.conftest import eventually, start_kizuna
from tests.flows.test_registration import Chat, walk_to
from tests.services import two_serves_one_killed

JST = timezone(timedelta(hours=9))


def texts_to(emulator, user_id: str) -> list[str]:
    return [d.message.get("text") or d.message.get("altText") or "" for d in emulator.messages_to(user_id)]


def count_of(emulator, user_id: str, needle: str) -> int:
    return sum(needle in text for text in texts_to(emulator, user_id))


async def arrived(emulator, user_id: str, needle: str, *, timeout: float = 10.0) -> None:
    async def check() -> bool:
        return count_of(emulator, user_id, needle) >= 1

    await eventually(check, timeout=timeout, what=f"{needle!r} to reach {user_id}")


def move_clock(kizuna, by: timedelta) -> None:
    """From now on the app (its worker's sequence job, its API) sees real time + `by`."""
    kizuna.server.app[SERVICES].clock = lambda: utcnow() + by


async def create_sequence(kizuna, **body) -> dict:
    status, answer = await kizuna.api("POST", "/api/v1/sequences", json=body)
    assert status == 201, answer
    return answer


async def sequence(kizuna, sequence_id: int) -> dict:
    status, answer = await kizuna.api("GET", f"/api/v1/sequences/{sequence_id}")
    assert status == 200, answer
    return answer


async def follower(kizuna, name: str = "佐藤 美咲"):
    """A customer who followed the account (the greeting arrived); (user id, customer id)."""
    user = kizuna.emulator.add_user(display_name=name)
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    return user.user_id, await kizuna.customer_id(user.user_id)


async def enrolments(kizuna, customer_id: int) -> list[SequenceEnrolment]:
    async with kizuna.sessions() as session:
        return list((await session.execute(
            sa.select(SequenceEnrolment).where(SequenceEnrolment.customer_id == customer_id).order_by(SequenceEnrolment.id)
        )).scalars())


WELCOME = dict(
    name="会員登録ステップ", trigger="registered",
    steps=[
        {"messages": [{"type": "text", "text": "{name}さん、ご登録ありがとうございます！(day 0)"}]},
        {"delay_days": 3, "delay_from": "enrolment", "messages": [{"type": "text", "text": "お手入れのコツ (day 3)"}]},
        {"delay_days": 7, "delay_from": "enrolment", "messages": [{"type": "text", "text": "詰め替えのご案内 (day 7)"}]},
    ],
)


async def test_registration_sends_day_0_at_once_and_day_3_three_days_later_exactly_once(kizuna):
    created = await create_sequence(kizuna, **WELCOME)
    user = kizuna.emulator.add_user(display_name="LINEの名前")
    chat = Chat(kizuna.emulator, user.user_id)
    await chat._replies(kizuna.emulator.follow(user.user_id), 1)
    await walk_to(chat, "registration.confirm")
    await chat.say("登録する", expect=1)  # 「登録が完了しました」 (no registration coupon in this shop)

    # Day 0 at once, with the name given at registration.
    await arrived(kizuna.emulator, user.user_id, "(day 0)")
    assert count_of(kizuna.emulator, user.user_id, "山田 花子さん、ご登録ありがとうございます！") == 1
    customer_id = await kizuna.customer_id(user.user_id)
    [enrolment] = await enrolments(kizuna, customer_id)
    assert enrolment.current_step == 1 and enrolment.next_due_at - enrolment.enrolled_at == timedelta(days=3)

    # Two days and 23 hours later: nothing yet.
    move_clock(kizuna, timedelta(days=2, hours=23))
    assert await sequences.send_due(kizuna.sessions, now=utcnow() + timedelta(days=2, hours=23)) == []
    assert count_of(kizuna.emulator, user.user_id, "(day 3)") == 0

    # Three days later: day 3 arrives, once, even with two more workers claiming at the same moment.
    later = utcnow() + timedelta(days=3, minutes=1)
    move_clock(kizuna, timedelta(days=3, minutes=1))
    extra = await asyncio.gather(sequences.send_due(kizuna.sessions, now=later), sequences.send_due(kizuna.sessions, now=later))
    await arrived(kizuna.emulator, user.user_id, "(day 3)")
    async with kizuna.sessions() as session:
        sent = (await session.execute(sa.select(sa.func.count()).select_from(Delivery).where(
            Delivery.customer_id == customer_id, Delivery.sender_type == "sequence"))).scalar_one()
    assert sent == 2  # day 0 and day 3: one outbox row each, whoever claimed it
    assert len(extra[0]) + len(extra[1]) <= 1
    assert count_of(kizuna.emulator, user.user_id, "(day 3)") == 1
    assert count_of(kizuna.emulator, user.user_id, "(day 7)") == 0

    figures = await sequence(kizuna, created["id"])
    assert figures["enrolled"] == 1 and figures["active"] == 1
    assert [step["sent"] for step in figures["steps"]] == [1, 1, 0]

    # Day 7: the last step completes the enrolment.
    move_clock(kizuna, timedelta(days=7, minutes=1))
    await arrived(kizuna.emulator, user.user_id, "(day 7)")
    await eventually(lambda: _completed(kizuna, created["id"]), what="the enrolment to complete")
    timeline = await kizuna.timeline(user.user_id)
    assert [row["text"] for row in timeline if row["sender_type"] == "sequence"] == [
        "山田 花子さん、ご登録ありがとうございます！(day 0)", "お手入れのコツ (day 3)", "詰め替えのご案内 (day 7)"]


async def _completed(kizuna, sequence_id: int) -> bool:
    return (await sequence(kizuna, sequence_id))["completed"] == 1


async def test_two_workers_claiming_at_once_send_each_due_step_once(kizuna):
    await create_sequence(kizuna, name="タグ", trigger="tag_added", trigger_value="VIP",
                          steps=[{"delay_hours": 1, "messages": [{"type": "text", "text": "VIP限定のご案内"}]}])
    people = [await follower(kizuna, f"客{index}") for index in range(12)]
    for _user_id, customer_id in people:
        status, _ = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "VIP"})
        assert status in (200, 201)
    later = utcnow() + timedelta(hours=1, minutes=1)
    # Four claimers at the same moment (the app's own worker still sees the real clock: not due for it).
    results = await asyncio.gather(*(sequences.send_due(kizuna.sessions, now=later, limit=5) for _ in range(4)))
    results += [await sequences.send_due(kizuna.sessions, now=later) for _ in range(2)]
    claimed = [delivery_id for result in results for delivery_id in result]
    assert len(claimed) == len(set(claimed)) == 12
    # Nobody handed them to a sender: the worker's sweeper sends what the outbox holds.
    for user_id, _customer_id in people:
        await arrived(kizuna.emulator, user_id, "VIP限定のご案内")
    for user_id, _customer_id in people:
        assert count_of(kizuna.emulator, user_id, "VIP限定のご案内") == 1


async def test_an_order_exits_the_first_order_nudge_before_it_is_due(kizuna):
    created = await create_sequence(
        kizuna, name="初回購入フォロー", trigger="first_order", exit_on=["ordered_again"],
        steps=[{"delay_days": 4, "messages": [{"type": "text", "text": "{name}さん、そろそろ使い切る頃では？"}]}],
    )
    user_id, customer_id = await follower(kizuna)

    async def order(external_id: str) -> None:
        status, body = await kizuna.api("POST", "/api/v1/orders", json={
            "external_id": external_id, "line_user_id": user_id, "ordered_at": utcnow().isoformat(), "total": 3300})
        assert status == 200, body

    await order("EC-1")
    [enrolment] = await enrolments(kizuna, customer_id)
    assert enrolment.status == "active" and enrolment.next_due_at - enrolment.enrolled_at == timedelta(days=4)
    await order("EC-2")  # the second order, before day 4
    [enrolment] = await enrolments(kizuna, customer_id)
    assert (enrolment.status, enrolment.exit_reason) == ("exited", "ordered_again")
    assert await sequences.send_due(kizuna.sessions, now=utcnow() + timedelta(days=5)) == []
    assert count_of(kizuna.emulator, user_id, "そろそろ使い切る頃") == 0
    figures = await sequence(kizuna, created["id"])
    assert figures["exited"] == {"ordered_again": 1} and figures["steps"][0]["exited"] == {"ordered_again": 1}

    # A second order is not a first order: it starts nothing.
    await order("EC-3")
    assert len(await enrolments(kizuna, customer_id)) == 1


async def test_a_step_due_at_23_00_waits_for_the_window_to_open_at_09_00(kizuna):
    await create_sequence(kizuna, name="窓", trigger="tag_added", trigger_value="窓",
                          send_window={"start": "09:00", "end": "21:00", "timezone": "Asia/Tokyo"},
                          steps=[{"messages": [{"type": "text", "text": "朝のお知らせ"}]}])
    user_id, customer_id = await follower(kizuna)
    status, _ = await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "窓"})
    night = datetime.now(JST).replace(hour=23, minute=0, second=0, microsecond=0) + timedelta(days=1)
    assert await sequences.send_due(kizuna.sessions, now=night) == []
    [enrolment] = await enrolments(kizuna, customer_id)
    morning = (night + timedelta(days=1)).replace(hour=9, minute=0)
    assert enrolment.status == "active" and enrolment.next_due_at == morning  # held, not dropped
    assert await sequences.send_due(kizuna.sessions, now=morning - timedelta(minutes=1)) == []
    assert len(await sequences.send_due(kizuna.sessions, now=morning)) == 1
    await arrived(kizuna.emulator, user_id, "朝のお知らせ")


async def test_a_customer_who_blocked_or_opted_out_is_exited_and_sent_nothing(kizuna):
    await create_sequence(kizuna, name="B", trigger="tag_added", trigger_value="B",
                          steps=[{"delay_hours": 1, "messages": [{"type": "text", "text": "届いてはいけない"}]}])
    blocker, blocker_id = await follower(kizuna, "ブロックする人")
    quitter, quitter_id = await follower(kizuna, "配信停止する人")
    for customer_id in (blocker_id, quitter_id):
        await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "B"})
    assert (await kizuna.emulator.unfollow(blocker)).status == 200

    async def blocked() -> bool:
        async with kizuna.sessions() as session:
            return (await customers.get(session, blocker_id)).blocked

    await eventually(blocked, what="the unfollow to be processed")
    await Chat(kizuna.emulator, quitter).say("配信停止")  # 「お知らせを停止しました」
    assert await sequences.send_due(kizuna.sessions, now=utcnow() + timedelta(hours=2)) == []
    assert [(e.status, e.exit_reason) for e in await enrolments(kizuna, blocker_id)] == [("exited", "blocked")]
    assert [(e.status, e.exit_reason) for e in await enrolments(kizuna, quitter_id)] == [("exited", "opted_out")]
    assert count_of(kizuna.emulator, quitter, "届いてはいけない") == 0


async def test_a_removed_tag_exits_and_a_coupon_step_grants_its_coupon(kizuna):
    status, coupon = await kizuna.api("POST", "/api/v1/coupons", json={
        "title": "VIP 1000円OFF", "discount_type": "amount", "discount_value": 1000, "valid_days": 14})
    assert status == 201, coupon
    await create_sequence(kizuna, name="VIP", trigger="tag_added", trigger_value="VIP", exit_on=["tag_removed"],
                          steps=[{"messages": [{"type": "text", "text": "{name}様へVIPクーポン"}], "coupon_id": coupon["id"]},
                                 {"delay_days": 1, "messages": [{"type": "text", "text": "VIP 2日目"}]}])
    user_id, customer_id = await follower(kizuna, "鈴木 一郎")
    await kizuna.api("POST", f"/api/v1/customers/{customer_id}/tags", json={"tag": "VIP"})
    await arrived(kizuna.emulator, user_id, "鈴木 一郎様へVIPクーポン")
    await arrived(kizuna.emulator, user_id, "VIP 1000円OFF")  # the coupon's card, the customer's own grant
    async with aiohttp.ClientSession() as client, client.delete(
        f"{kizuna.url}/api/v1/customers/{customer_id}/tags/VIP", headers={"Authorization": f"Bearer {kizuna.admin_token}"},
    ) as response:
        assert response.status == 204
    [enrolment] = await enrolments(kizuna, customer_id)
    assert (enrolment.status, enrolment.exit_reason, enrolment.current_step) == ("exited", "tag_removed", 1)
    assert await sequences.send_due(kizuna.sessions, now=utcnow() + timedelta(days=2)) == []


async def test_a_restart_mid_way_loses_nothing(kizuna, settings, emulator):
    await create_sequence(kizuna, **WELCOME)
    user_id, customer_id = await follower(kizuna)
    chat = Chat(emulator, user_id)
    await walk_to(chat, "registration.confirm")
    await chat.say("登録する", expect=1)
    await arrived(emulator, user_id, "(day 0)")

    # Day 3 is written into the outbox and the process dies before sending it.
    assert len(await sequences.send_due(kizuna.sessions, now=utcnow() + timedelta(days=3, minutes=1))) == 1
    await kizuna.server.close()
    assert count_of(emulator, user_id, "(day 3)") == 0

    server, _token = await start_kizuna(settings, emulator)
    try:
        server.app[SERVICES].clock = lambda: utcnow() + timedelta(days=7, minutes=1)
        await arrived(emulator, user_id, "(day 3)")  # the new process's sweeper sends the outbox row
        await arrived(emulator, user_id, "(day 7)")  # and its scheduler the step that fell due while it was down
    finally:
        await server.close()
    assert count_of(emulator, user_id, "(day 0)") == count_of(emulator, user_id, "(day 3)") == count_of(emulator, user_id, "(day 7)") == 1


async def test_customers_entering_a_segment_are_enrolled_and_those_in_it_before_are_not(kizuna):
    before_id = (await follower(kizuna, "前から"))[1]
    await kizuna.api("POST", f"/api/v1/customers/{before_id}/tags", json={"tag": "常連"})
    status, segment = await kizuna.api("POST", "/api/v1/segments", json={
        "name": "常連", "rule": {"field": "tag", "op": "eq", "value": "常連"}})
    assert status == 201, segment
    created = await create_sequence(kizuna, name="常連になった", trigger="segment_entered", trigger_value=str(segment["id"]),
                                    steps=[{"messages": [{"type": "text", "text": "常連さまへ"}]}])
    now = utcnow()
    assert await sequences.enter_segments(kizuna.sessions, now=now) == 0  # the first look: who is in already
    newcomer, newcomer_id = await follower(kizuna, "新しく")
    await kizuna.api("POST", f"/api/v1/customers/{newcomer_id}/tags", json={"tag": "常連"})
    assert await sequences.enter_segments(kizuna.sessions, now=now + timedelta(minutes=1)) == 0  # not due a look yet
    assert await sequences.enter_segments(kizuna.sessions, now=now + timedelta(minutes=11)) == 1
    assert await sequences.enter_segments(kizuna.sessions, now=now + timedelta(minutes=22)) == 0  # still in: not again
    assert len(await sequences.send_due(kizuna.sessions, now=now + timedelta(minutes=22))) == 1
    await arrived(kizuna.emulator, newcomer, "常連さまへ")
    assert [e.customer_id for e in await enrolments(kizuna, before_id)] == []
    assert (await sequence(kizuna, created["id"]))["enrolled"] == 1


async def test_tagging_a_whole_segment_enrols_those_it_tagged_and_untagging_exits_them(kizuna):
    created = await create_sequence(kizuna, name="一括", trigger="tag_added", trigger_value="秋キャンペーン", exit_on=["tag_removed"],
                                    steps=[{"delay_days": 1, "messages": [{"type": "text", "text": "秋のご案内"}]}])
    people = [(await follower(kizuna, f"客{index}"))[1] for index in range(3)]
    already = people[0]
    await kizuna.api("POST", f"/api/v1/customers/{already}/tags", json={"tag": "秋キャンペーン"})
    status, segment = await kizuna.api("POST", "/api/v1/segments", json={"name": "全員", "rule": {"field": "followed", "op": "eq", "value": True}})
    assert status == 201, segment
    status, result = await kizuna.api("POST", f"/api/v1/segments/{segment['id']}/tags", json={"tag": "秋キャンペーン", "action": "add"})
    assert status == 200 and result["changed"] == 2, result
    assert (await sequence(kizuna, created["id"]))["enrolled"] == 3  # the one tagged before, and the two tagged now
    status, result = await kizuna.api("POST", f"/api/v1/segments/{segment['id']}/tags", json={"tag": "秋キャンペーン", "action": "remove"})
    assert status == 200 and result["changed"] == 3
    figures = await sequence(kizuna, created["id"])
    assert figures["exited"] == {"tag_removed": 3} and figures["active"] == 0


async def test_a_friend_who_came_through_a_source_gets_its_sequence(kizuna):
    async with transaction(kizuna.sessions) as session:
        source = await friend_sources.create(session, "店頭POP", None, actor=audit.CLI)
    await create_sequence(kizuna, name="店頭から", trigger="friend_source", trigger_value=source.code,
                          steps=[{"messages": [{"type": "text", "text": "{name}さん、ご来店ありがとうございます"}]}])
    user = kizuna.emulator.add_user(display_name="来店 花子")
    other = kizuna.emulator.add_user(display_name="直接 太郎")
    async with transaction(kizuna.sessions) as session:  # the LINE Login callback of the source's link, before the follow
        await friend_sources.record_login(session, source, user.user_id, friendship_changed=False, is_friend=False, now=utcnow())
    for person in (user, other):
        await Chat(kizuna.emulator, person.user_id)._replies(kizuna.emulator.follow(person.user_id), 1)
    await arrived(kizuna.emulator, user.user_id, "来店 花子さん、ご来店ありがとうございます")
    assert await enrolments(kizuna, await kizuna.customer_id(other.user_id)) == []


async def test_two_processes_one_killed_mid_way_send_each_step_exactly_once(database_url, emulator, redis_prefix, tmp_path):
    """Two `kizuna serve` processes (each runs the worker in-process) on one database race for
    300 due steps; one is killed with SIGKILL while they send. Every customer gets the step once,
    counted from what the emulator accepted."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    users = [emulator.add_user(display_name=f"客{index}", followed=True) for index in range(300)]
    async with transaction(sessions) as session:
        session.add_all([Customer(line_user_id=user.user_id, display_name=user.display_name, followed=True, followed_at=utcnow())
                         for user in users])
    async with transaction(sessions) as session:
        created = await sequences.create(session, sequences.SequenceCreate(
            name="一斉", trigger="tag_added", trigger_value="一斉",
            steps=[{"messages": [{"type": "text", "text": "{name}さんへ"}]}]), created_by="test", now=utcnow())
        assert await store.enrol(session, SequenceTrigger.TAG_ADDED, customer_ids=sa.select(Customer.id), value="一斉",
                                 now=utcnow()) == 300
    await engine.dispose()
    emulator.delay_next("push", 0.3, count=300)  # slow pushes: many in flight when the kill comes

    at_kill = await two_serves_one_killed(database_url, emulator, redis_prefix, tmp_path, [user.user_id for user in users],
                                          kill_after=10, what="steps")
    counts = [len(emulator.messages_to(user.user_id)) for user in users]
    assert counts == [1] * 300, sorted(set(counts))
    assert all(emulator.messages_to(user.user_id)[0].message["text"] == f"{user.display_name}さんへ" for user in users)
    assert at_kill < 300  # the kill came mid-way
