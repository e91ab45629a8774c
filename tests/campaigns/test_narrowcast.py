"""Narrowcast delivery (issue 15 §2): a campaign of identical content sent as ONE narrowcast per
variant to a LINE audience uploaded from its snapshot (real HTTP, the emulator as LINE, a real
database): it reaches exactly the queued recipients (not the control group, not who opted out,
not the followers outside the segment), survives a worker dying between the upload and the send
and a lost acknowledgement without a second send, and refuses content that differs per recipient."""

from __future__ import annotations

from datetime import timedelta

from contextlib import AsyncExitStack

import aiohttp
import pytest
import sqlalchemy as sa

from aiohttp.test_utils import TestServer

from kizuna.bot.app import create_app
from kizuna.bot.campaign_sender import CampaignSender
from kizuna.bot.keys import LINE, SESSIONS
from kizuna.bot.narrowcast_sender import LEASE
from kizuna.storage import campaign_narrowcasts, tokens
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import CampaignNarrowcast, CampaignRecipient, Customer, NarrowcastState
from kizuna.storage.types import utcnow
from tests.chaos import Production
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, Kizuna, eventually, make_settings, start_kizuna

REGISTERED = {"field": "registered", "op": "eq", "value": True}
SALE = [{"type": "text", "text": "週末セール：全品10%オフ"}]
MEMBERS, OUTSIDERS, OPTED_OUT = 300, 40, 25


@pytest.fixture
def settings(database_url, emulator, redis_prefix, redis_cleanup):
    """LINE allows 60 narrowcasts an hour: a retry would wait a minute for its turn. Here LINE (the
    emulator) and Kizuna's limiter both allow more, so a test's retry goes at once."""
    emulator.set_rate_limit("narrowcast", 20)
    return make_settings(database_url, emulator.base_url, redis_prefix=redis_prefix, line_rate_limits="narrowcast=20,audience=50")


async def _shop(kizuna: Kizuna) -> dict[str, list[str]]:
    """Friends of the account known to Kizuna: registered members (the segment), some of whom
    said no to marketing messages, and followers outside the segment."""
    emu = kizuna.emulator
    members = [emu.add_user(f"会員{n}", followed=True).user_id for n in range(MEMBERS)]
    outsiders = [emu.add_user(f"友だち{n}", followed=True).user_id for n in range(OUTSIDERS)]
    now = utcnow()
    rows = [{"line_user_id": uid, "display_name": f"会員{n}", "followed": True, "registered": True,
             "marketing_opt_in": n >= OPTED_OUT, "marketing_consent_changed_at": now if n < OPTED_OUT else None}
            for n, uid in enumerate(members)]
    rows += [{"line_user_id": uid, "display_name": f"友だち{n}", "followed": True} for n, uid in enumerate(outsiders)]
    async with transaction(kizuna.sessions) as session:
        await session.execute(sa.insert(Customer), rows)
    return {"members": members, "opted_out": members[:OPTED_OUT], "outsiders": outsiders}


def _narrowcast_texts(kizuna: Kizuna) -> dict[str, list[str]]:
    """Who got what by narrowcast, by LINE user id (the emulator's record of deliveries)."""
    out: dict[str, list[str]] = {}
    for user_id in kizuna.emulator.users:
        texts = [m.message.get("text") for m in kizuna.emulator.messages_to(user_id) if m.via == "narrowcast"]
        if texts:
            out[user_id] = texts
    return out


async def _recipients(kizuna: Kizuna, campaign_id: int) -> dict[str, set[str]]:
    r, c = CampaignRecipient.__table__, Customer.__table__
    async with kizuna.sessions() as session:
        rows = await session.execute(sa.select(r.c.status, c.c.line_user_id).join(c, c.c.id == r.c.customer_id)
                                     .where(r.c.campaign_id == campaign_id))
    out: dict[str, set[str]] = {}
    for status, line_user_id in rows:
        out.setdefault(status, set()).add(line_user_id)
    return out


async def _wait_for(kizuna: Kizuna, campaign_id: int, status: str, timeout: float = 20.0) -> dict:
    body: dict = {}

    async def reached() -> bool:
        nonlocal body
        _, body = await kizuna.api("GET", f"/api/v1/campaigns/{campaign_id}")
        return body["status"] == status

    try:
        await eventually(reached, timeout=timeout, what=f"campaign {campaign_id} {status}")
    except AssertionError:
        raise AssertionError(f"{body}") from None
    return body


async def _create(kizuna: Kizuna, **fields) -> dict:
    body = {"name": "週末セール", "rule": REGISTERED, "messages": SALE, "quiet_hours": False, "delivery": "narrowcast", **fields}
    status, campaign = await kizuna.api("POST", "/api/v1/campaigns", json=body)
    assert status == 201, campaign
    return campaign


async def test_a_narrowcast_reaches_exactly_the_queued_recipients_with_one_request(kizuna):
    shop = await _shop(kizuna)
    campaign = await _create(kizuna, holdout_percent=10)
    assert campaign["delivery"] == "narrowcast"
    done = await _wait_for(kizuna, campaign["id"], "completed")

    snapshot = await _recipients(kizuna, campaign["id"])
    queued, control = snapshot["queued"], snapshot["control"]
    assert snapshot["opted_out"] == set(shop["opted_out"]) and control and len(queued) + len(control) == MEMBERS - OPTED_OUT
    received = _narrowcast_texts(kizuna)
    assert set(received) == queued  # not the control group, not who opted out, not the followers outside the segment
    assert all(texts == ["週末セール：全品10%オフ"] for texts in received.values())
    [request] = kizuna.emulator.requests_to("narrowcast")  # ONE request, with its retry key, to the uploaded audience
    assert request.headers.get("X-Line-Retry-Key") and request.json["recipient"]["type"] == "audience"
    assert done["by_narrowcast"] and done["line_delivering"]
    assert done["stats"]["sent"] == len(queued) and done["stats"]["pending"] == 0 and done["stats"]["failed"] == 0
    [narrowcast] = done["narrowcasts"]
    assert narrowcast | {"request_id": None} == {
        "variant": "A", "state": "done", "uploaded": len(queued), "request_id": None, "phase": "succeeded",
        "target_count": len(queued), "success_count": len(queued), "failure_count": 0, "error": None}

    async def audience_deleted() -> bool:
        return not kizuna.emulator.audiences

    await eventually(audience_deleted, what="the audience deleted after the send")
    status, refused = await kizuna.api("POST", f"/api/v1/campaigns/{campaign['id']}/pause")
    assert status == 409, refused


async def test_a_lost_acknowledgement_is_retried_with_the_same_key_and_sends_once(kizuna):
    shop = await _shop(kizuna)
    # LINE accepts the narrowcast but the answer is lost: the retry carries the same key, LINE answers 409.
    kizuna.emulator.fail_next("narrowcast", 500, count=1, after_executing=True)
    campaign = await _create(kizuna)
    done = await _wait_for(kizuna, campaign["id"], "completed")
    requests = kizuna.emulator.requests_to("narrowcast")
    assert [r.status for r in requests] == [500, 409] and len({r.headers.get("X-Line-Retry-Key") for r in requests}) == 1
    received = _narrowcast_texts(kizuna)
    assert set(received) == set(shop["members"][OPTED_OUT:]) and all(len(texts) == 1 for texts in received.values())
    assert done["stats"]["sent"] == MEMBERS - OPTED_OUT


async def test_a_narrowcast_line_fails_is_recorded_as_failed_with_lines_reason_and_nothing_is_sent_again(kizuna):
    await _shop(kizuna)
    kizuna.emulator.narrowcast_min_audience = 1000  # LINE then fails the request (error code 4) having sent nothing
    campaign = await _create(kizuna)
    done = await _wait_for(kizuna, campaign["id"], "completed")
    queued = MEMBERS - OPTED_OUT
    assert (done["stats"]["sent"], done["stats"]["failed"], done["stats"]["pending"]) == (0, queued, 0), done["stats"]
    [narrowcast] = done["narrowcasts"]
    assert narrowcast["phase"] == "failed" and "(4)" in narrowcast["error"], narrowcast
    assert _narrowcast_texts(kizuna) == {} and len(kizuna.emulator.requests_to("narrowcast")) == 1

    async def audience_deleted() -> bool:
        return not kizuna.emulator.audiences

    await eventually(audience_deleted, what="the audience deleted after the failure")


@pytest.fixture
async def shop_without_worker(settings, emulator):
    """Kizuna's web app without its worker: the test plays the workers (each a CampaignSender with
    its own NarrowcastSender over the same database and LINE), so it can let one die at a stage."""
    server = TestServer(create_app(settings, run_worker=False), host="127.0.0.1")
    await server.start_server()
    async with transaction(server.app[SESSIONS]) as session:
        _token, plain = await tokens.create(session, name="tests", role="admin")
    yield Kizuna(server=server, emulator=emulator, settings=settings, admin_token=plain)
    await server.close()


def _worker(kizuna: Kizuna, clock) -> CampaignSender:
    """A fresh worker's campaign sender: nothing carried over from another (as after a restart)."""
    app = kizuna.server.app
    return CampaignSender(sessions=app[SESSIONS], line=app[LINE], secret_key="k", public_url="http://shop", clock=clock)


async def _stage(kizuna: Kizuna, campaign_id: int) -> CampaignNarrowcast:
    async with kizuna.sessions() as session:
        [row] = await campaign_narrowcasts.of_campaign(session, campaign_id)
        return row


async def test_a_worker_dying_between_the_upload_and_the_send_leaves_the_next_one_to_send_once(shop_without_worker):
    kizuna = shop_without_worker
    shop = await _shop(kizuna)
    now = utcnow()
    campaign = await _create(kizuna)
    first = _worker(kizuna, clock=lambda: now)
    started = await first.start_due()
    assert started.id == campaign["id"] and started.by_narrowcast

    # The first worker uploads the audience (a stored stage), then takes the row for the next
    # stage and dies holding it: its lease must run out before anyone else continues.
    assert await first.narrowcasts.advance()
    uploaded = await _stage(kizuna, campaign["id"])
    assert uploaded.state == NarrowcastState.WAITING and uploaded.uploaded == MEMBERS - OPTED_OUT
    assert len(kizuna.emulator.audiences) == 1 and not kizuna.emulator.requests_to("narrowcast")
    async with transaction(kizuna.sessions) as session:
        assert await campaign_narrowcasts.lease(session, now=now + timedelta(seconds=2), until=now + timedelta(seconds=2) + LEASE)
    del first  # killed: its process state is gone; only the database remembers

    # A second worker, while the lease is still held, waits; after it runs out (the clock moved), it continues.
    offset = timedelta(seconds=10)
    second = _worker(kizuna, clock=lambda: utcnow() + offset)
    assert not await second.narrowcasts.advance()
    offset = LEASE + timedelta(seconds=5)

    async def delivered() -> bool:
        await second.narrowcasts.advance_all()
        await second.start_due()  # the tick settles finished campaigns
        return (await _stage(kizuna, campaign["id"])).state == NarrowcastState.DONE

    await eventually(delivered, what="the narrowcast sent and delivered by the second worker")
    [request] = kizuna.emulator.requests_to("narrowcast")
    assert request.status == 202
    received = _narrowcast_texts(kizuna)
    assert set(received) == set(shop["members"][OPTED_OUT:]) and all(len(texts) == 1 for texts in received.values())
    assert [r.status for r in kizuna.emulator.requests_to("audience_create")] == [202]  # the audience was not uploaded twice
    done = await _wait_for(kizuna, campaign["id"], "completed")
    assert done["stats"]["sent"] == MEMBERS - OPTED_OUT and not kizuna.emulator.audiences


async def test_a_pause_before_the_send_holds_it_and_a_cancel_deletes_the_audience_sending_nothing(shop_without_worker):
    kizuna = shop_without_worker
    await _shop(kizuna)
    now = utcnow()
    campaign = await _create(kizuna)
    worker = _worker(kizuna, clock=lambda: now)
    await worker.start_due()
    assert await worker.narrowcasts.advance()  # uploaded
    status, paused = await kizuna.api("POST", f"/api/v1/campaigns/{campaign['id']}/pause")
    assert status == 200 and paused["status"] == "paused" and not paused["line_delivering"]
    now += timedelta(seconds=5)
    assert not await worker.narrowcasts.advance()  # a paused campaign's narrowcast waits
    status, cancelled = await kizuna.api("POST", f"/api/v1/campaigns/{campaign['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    await worker.narrowcasts.advance_all()
    assert (await _stage(kizuna, campaign["id"])).state == NarrowcastState.CANCELLED
    assert not kizuna.emulator.requests_to("narrowcast") and not kizuna.emulator.audiences


@pytest.mark.parametrize(("fields", "why"), [
    ({"messages": [{"type": "text", "text": "{name}さん、週末セールです"}]}, "personalisation"),
    ({"messages": [{"type": "text", "text": "詳しくは https://shop.example/sale"}]}, "tracked links"),
    ({"delivery": "broadcast"}, None),
])
async def test_narrowcast_of_content_that_differs_per_recipient_is_refused_and_nothing_is_saved(kizuna, fields, why):
    body = {"name": "週末セール", "rule": REGISTERED, "messages": SALE, "delivery": "narrowcast", **fields}
    status, refused = await kizuna.api("POST", "/api/v1/campaigns", json=body)
    assert status == 400, refused
    assert why is None or why in str(refused)
    _, listed = await kizuna.api("GET", "/api/v1/campaigns")
    assert listed["items"] == []


async def test_narrowcast_with_a_coupon_is_refused(kizuna):
    status, coupon = await kizuna.api("POST", "/api/v1/coupons", json={
        "title": "500円OFF", "discount_type": "amount", "discount_value": 500, "valid_days": 30})
    assert status == 201, coupon
    body = {"name": "週末セール", "rule": REGISTERED, "messages": SALE, "delivery": "narrowcast", "coupon_id": coupon["id"]}
    status, refused = await kizuna.api("POST", "/api/v1/campaigns", json=body)
    assert status == 400 and "coupon" in str(refused), refused


async def test_auto_uses_narrowcast_from_the_threshold_and_multicast_below(settings, emulator):
    server, token = await start_kizuna(settings.model_copy(update={"narrowcast_threshold": 100}), emulator)
    try:
        kizuna = Kizuna(server=server, emulator=emulator, settings=settings, admin_token=token)
        await _shop(kizuna)
        big = await _create(kizuna, delivery="auto")
        assert (await _wait_for(kizuna, big["id"], "completed"))["by_narrowcast"]
        small = await _create(kizuna, delivery="auto", rule={"field": "registered", "op": "eq", "value": False})  # 40 followers
        done = await _wait_for(kizuna, small["id"], "completed")
        assert not done["by_narrowcast"] and done["stats"]["sent"] == OUTSIDERS
        assert len(kizuna.emulator.requests_to("narrowcast")) == 1 and len(kizuna.emulator.requests_to("multicast")) == 1
    finally:
        await server.close()


@pytest.mark.skipif(TEST_DATABASE_URL is None or TEST_REDIS_URL is None,
                    reason="real processes: runs in the PostgreSQL + Redis suite (KIZUNA_TEST_DATABASE_URL, KIZUNA_TEST_REDIS_URL)")
async def test_workers_killed_while_line_builds_the_audience_and_while_the_request_is_in_flight_send_once(
        database_url, emulator, redis_prefix, redis_cleanup, tmp_path):
    """`kizuna serve` and `kizuna worker` processes; a worker SIGKILLed while LINE builds the
    audience (after the upload), its replacement SIGKILLed while the narrowcast request is in
    flight (LINE executed it; its answer is held), a third finishes: one send, every queued
    member once, the campaign's figures right."""
    emulator.set_rate_limit("narrowcast", 20)
    emulator.audience_ready_seconds = 4.0  # the audience stays IN_PROGRESS: time to kill the worker waiting for it
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        members = [emulator.add_user(f"会員{n}", followed=True).user_id for n in range(120)]
        async with transaction(sessions) as session:
            await session.execute(sa.insert(Customer), [{"line_user_id": uid, "display_name": f"会員{n}", "followed": True,
                                                         "registered": True} for n, uid in enumerate(members)])
            _token, token = await tokens.create(session, name="kills", role="admin")

        async def stage() -> str | None:
            async with sessions() as session:
                return (await session.execute(sa.select(CampaignNarrowcast.state))).scalars().first()

        async with AsyncExitStack() as stack:
            production = Production(database_url, TEST_REDIS_URL, emulator, tmp_path, redis_prefix)
            production.env |= {"KIZUNA_LINE_RATE_LIMITS": "narrowcast=20,audience=50"}
            await production.start(stack, "serve", "serve-1")
            worker = await production.start(stack, "worker", "worker-1")
            await production.workers_ready(worker)
            base_url = f"http://127.0.0.1:{production.port}"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client:
                async with client.post(f"{base_url}/api/v1/campaigns", json={
                        "name": "週末セール", "rule": REGISTERED, "messages": SALE, "quiet_hours": False,
                        "delivery": "narrowcast"}) as response:
                    assert response.status == 201, await response.text()
                    campaign = await response.json()

                def reached(state: str):
                    async def check() -> bool:
                        return await stage() == state

                    return check

                try:
                    await eventually(reached("waiting"), timeout=30, what="the audience uploaded")
                    worker.kill()  # while LINE builds the audience
                    # The next request is executed by LINE, then its answer held for 8 s: the worker dies waiting for it.
                    emulator.delay_next("narrowcast", 8.0, after_executing=True)
                    worker = await production.start(stack, "worker", "worker-2")
                    await eventually(reached("sending"), timeout=30, what="the narrowcast request sent")

                    async def executed() -> bool:
                        return bool(_narrowcast_texts_of(emulator, members))

                    await eventually(executed, timeout=30, what="LINE to execute the narrowcast")
                    worker.kill()  # the request in flight, its answer not yet received
                    worker = await production.start(stack, "worker", "worker-3")

                    async def completed() -> bool:
                        async with client.get(f"{base_url}/api/v1/campaigns/{campaign['id']}") as response:
                            return (await response.json())["status"] == "completed"

                    await eventually(completed, timeout=60, what="the campaign completed by the third worker")
                except AssertionError as error:
                    raise AssertionError(f"{error}\n{production.logs()[-15000:]}") from None
                async with client.get(f"{base_url}/api/v1/campaigns/{campaign['id']}") as response:
                    done = await response.json()
        received = _narrowcast_texts_of(emulator, members)
        assert sorted(len(texts) for texts in received.values()) == [1] * len(members), "each member once, none twice"
        # ONE send in LINE's record (every delivery from one accepted request). The request a killed
        # worker was waiting on may not be in the emulator's request log (its client went away before
        # the answer); the third worker's retry with the stored key is, answered 409: already sent.
        sends = {m.request_id for user in members for m in emulator.messages_to(user) if m.via == "narrowcast"}
        assert len(sends) == 1, sends
        statuses = [r.status for r in emulator.requests_to("narrowcast")]
        assert statuses.count(202) <= 1 and set(statuses) <= {202, 409} and 409 in statuses, statuses
        assert done["stats"]["sent"] == len(members) and done["narrowcasts"][0]["success_count"] == len(members)
        assert [r.status for r in emulator.requests_to("audience_create")] == [202]  # uploaded once
    finally:
        await engine.dispose()


def _narrowcast_texts_of(emulator, users: list[str]) -> dict[str, list[str]]:
    out = {}
    for user_id in users:
        texts = [m.message.get("text") for m in emulator.messages_to(user_id) if m.via == "narrowcast"]
        if texts:
            out[user_id] = texts
    return out
