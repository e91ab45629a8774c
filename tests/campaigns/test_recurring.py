"""Recurring campaigns (issue 15 §1 "recurring with a cron-like rule"): a rule in the shop's zone,
each occurrence its own run (a child campaign) sent once, the next one scheduled exactly once
whatever the workers, cancelling stops the recurrence. The clock is moved, never slept."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from kizuna.appkeys import SERVICES
from kizuna.bot.app import create_app
from kizuna.bot.campaign_sender import CampaignSender
from kizuna.bot.keys import LINE, SESSIONS
from kizuna.campaigns import recurrence
from kizuna.storage import tokens
from kizuna.storage.db import transaction
from kizuna.storage.models import Campaign, Customer
from kizuna.storage.types import utcnow
from tests.conftest import Kizuna, eventually

JST = ZoneInfo("Asia/Tokyo")
FOLLOWERS = {"field": "followed", "op": "eq", "value": True}
WEEKLY = [{"type": "text", "text": "今週のおすすめ"}]
MONDAYS_AT_TEN = "0 10 * * 1"


async def _friends(kizuna: Kizuna, count: int) -> list[str]:
    users = [kizuna.emulator.add_user(f"客{n}", followed=True).user_id for n in range(count)]
    async with transaction(kizuna.sessions) as session:
        await session.execute(sa.insert(Customer), [{"line_user_id": uid, "display_name": f"客{n}", "followed": True}
                                                    for n, uid in enumerate(users)])
    return users


def _weekly_texts(kizuna: Kizuna, user_id: str) -> list[str]:
    return [m.message.get("text") for m in kizuna.emulator.messages_to(user_id) if m.message.get("text") == "今週のおすすめ"]


def _move_clock_to(kizuna: Kizuna, when: datetime) -> None:
    """From now on the app (its worker, its API) sees `when` and time running on from there."""
    by = when - utcnow()
    kizuna.server.app[SERVICES].clock = lambda: utcnow() + by


async def _campaign(kizuna: Kizuna, campaign_id: int) -> dict:
    status, body = await kizuna.api("GET", f"/api/v1/campaigns/{campaign_id}")
    assert status == 200, body
    return body


async def _runs_completed(kizuna: Kizuna, campaign_id: int, count: int) -> dict:
    body: dict = {}

    async def done() -> bool:
        nonlocal body
        body = await _campaign(kizuna, campaign_id)
        return len(body["runs"]) == count and all(run["status"] == "completed" for run in body["runs"])

    await eventually(done, timeout=20, what=f"{count} completed runs")
    return body


async def test_two_occurrences_make_two_runs_each_sent_once_and_cancel_stops_the_next(kizuna):
    users = await _friends(kizuna, 3)
    status, weekly = await kizuna.api("POST", "/api/v1/campaigns", json={
        "name": "週刊おすすめ", "rule": FOLLOWERS, "messages": WEEKLY, "recurrence": MONDAYS_AT_TEN})
    assert status == 201, weekly
    first, second, third = (datetime.fromisoformat(t) for t in weekly["next_runs"])
    assert [t.astimezone(JST).strftime("%a %H:%M") for t in (first, second, third)] == ["Mon 10:00"] * 3
    assert second - first == timedelta(days=7) and weekly["status"] == "scheduled" and weekly["runs"] == []

    _move_clock_to(kizuna, first + timedelta(minutes=1))
    body = await _runs_completed(kizuna, weekly["id"], 1)
    [run] = body["runs"]
    assert datetime.fromisoformat(run["occurrence_at"]) == first and run["sent"] == 3
    assert body["next_runs"][0] == weekly["next_runs"][1]  # the parent moved on to its next time, once
    for user in users:
        assert _weekly_texts(kizuna, user) == ["今週のおすすめ"]

    # A week later (the frequency cap counts per run: last week's is out of its 7 days).
    _move_clock_to(kizuna, second + timedelta(minutes=1))
    body = await _runs_completed(kizuna, weekly["id"], 2)
    assert [datetime.fromisoformat(r["occurrence_at"]) for r in body["runs"]] == [second, first]
    assert [r["sent"] for r in body["runs"]] == [3, 3]
    for user in users:
        assert _weekly_texts(kizuna, user) == ["今週のおすすめ", "今週のおすすめ"]

    # Cancelled: the third Monday passes without a run. A one-off campaign due after it completing
    # shows the scheduler has looked past that time.
    status, cancelled = await kizuna.api("POST", f"/api/v1/campaigns/{weekly['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled" and cancelled["next_runs"] == []
    _move_clock_to(kizuna, third + timedelta(minutes=5))
    status, sentinel = await kizuna.api("POST", "/api/v1/campaigns", json={
        "name": "確認用", "rule": {"field": "followed", "op": "eq", "value": False}, "messages": WEEKLY, "quiet_hours": False})
    assert status == 201, sentinel

    async def sentinel_done() -> bool:
        return (await _campaign(kizuna, sentinel["id"]))["status"] == "completed"

    await eventually(sentinel_done, what="the one-off campaign after the third Monday")
    assert len((await _campaign(kizuna, weekly["id"]))["runs"]) == 2
    for user in users:
        assert len(_weekly_texts(kizuna, user)) == 2


@pytest.fixture
async def shop_without_worker(settings, emulator):
    server = TestServer(create_app(settings, run_worker=False), host="127.0.0.1")
    await server.start_server()
    async with transaction(server.app[SESSIONS]) as session:
        _token, plain = await tokens.create(session, name="tests", role="admin")
    yield Kizuna(server=server, emulator=emulator, settings=settings, admin_token=plain)
    await server.close()


async def test_an_occurrence_is_started_once_by_workers_racing_and_after_a_restart(shop_without_worker):
    kizuna = shop_without_worker
    await _friends(kizuna, 2)
    status, weekly = await kizuna.api("POST", "/api/v1/campaigns", json={
        "name": "週刊おすすめ", "rule": FOLLOWERS, "messages": WEEKLY, "recurrence": MONDAYS_AT_TEN})
    assert status == 201, weekly
    first = datetime.fromisoformat(weekly["next_runs"][0])
    at = first + timedelta(seconds=30)
    app = kizuna.server.app

    def worker() -> CampaignSender:
        return CampaignSender(sessions=app[SESSIONS], line=app[LINE], secret_key="k", public_url="http://shop", clock=lambda: at)

    # Three workers look at once, twice (a restart in between makes fresh ones): one run.
    for _ in range(2):
        await asyncio.gather(*(worker().start_due() for _ in range(3)))
    async with kizuna.sessions() as session:
        runs = (await session.execute(sa.select(Campaign).where(Campaign.parent_id == weekly["id"]))).scalars().all()
    assert [run.occurrence_at for run in runs] == [first]
    assert runs[0].status in ("scheduled", "running", "completed")


@pytest.mark.parametrize(("fields", "field"), [
    ({"recurrence": "every monday"}, "recurrence"),
    ({"recurrence": "0 25 * * 1"}, "recurrence"),
    ({"recurrence": "*/5 * * * *"}, "recurrence"),  # more often than hourly
    ({"recurrence": "0 10 * * 1", "send_at": "2030-01-07T10:00:00+09:00"}, "send_at"),
])
async def test_a_bad_rule_is_refused_naming_the_field_and_nothing_is_saved(kizuna, fields, field):
    status, refused = await kizuna.api("POST", "/api/v1/campaigns", json={
        "name": "週刊おすすめ", "rule": FOLLOWERS, "messages": WEEKLY, **fields})
    assert status == 400 and field in str(refused), refused
    _, listed = await kizuna.api("GET", "/api/v1/campaigns")
    assert listed["items"] == []


def test_the_rule_reads_in_the_shops_zone():
    after = datetime(2026, 12, 5, 12, 0, tzinfo=JST)  # a Saturday
    runs = recurrence.next_runs(MONDAYS_AT_TEN, after=after, zone="Asia/Tokyo", count=3)
    assert [r.astimezone(JST).isoformat() for r in runs] == [
        "2026-12-07T10:00:00+09:00", "2026-12-14T10:00:00+09:00", "2026-12-21T10:00:00+09:00"]
    assert recurrence.label(runs[0], "Asia/Tokyo") == "12/07(月) 10:00"
