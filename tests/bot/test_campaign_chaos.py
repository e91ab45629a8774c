"""A campaign under faults, with real processes (issue 15, Figures: "Faults"): `kizuna serve` and
two `kizuna worker`s on PostgreSQL and Redis send a personalised campaign (one push per customer)
while LINE (the emulator) answers some requests 5xx before executing them, executes others and
loses the answer (5xx after executing), answers 429 now and then, and the workers are killed with
SIGKILL every 2–5 s and replaced — or PostgreSQL is restarted with `-m immediate` mid-campaign.

Counted from the emulator's record of what it executed: every recipient got the campaign exactly
once (zero duplicates, zero gaps), and the campaign says so.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.storage import tokens
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.migrate import upgrade
from kizuna.storage.models import Customer
from tests.chaos import Production
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, eventually
from tests.services import postgres_cluster, redis_server

pytestmark = pytest.mark.skipif(
    TEST_DATABASE_URL is None or TEST_REDIS_URL is None,
    reason="production mode: runs in the PostgreSQL + Redis suite (KIZUNA_TEST_DATABASE_URL, KIZUNA_TEST_REDIS_URL)",
)

RECIPIENTS = 600
PUSH_LIMIT = 400  # requests/s the emulator allows: the campaign lasts several seconds, and some are 429
SETTLE_SECONDS = 120
KILLS = 3


async def _customers(database_url: str, emulator) -> tuple[list[str], str]:
    """RECIPIENTS friends of the account, known to Kizuna; and an API token."""
    users = [emulator.add_user(f"客{n}", followed=True).user_id for n in range(RECIPIENTS)]
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await session.execute(sa.insert(Customer), [
                {"line_user_id": user, "display_name": f"客{n}", "followed": True} for n, user in enumerate(users)])
            _token, plain = await tokens.create(session, name="chaos", role="admin")
    finally:
        await engine.dispose()
    return users, plain


async def _faults(emulator, stop: asyncio.Event) -> None:
    """Keep a few faults queued on push: 5xx before executing, 5xx after (a lost answer), 429."""
    rng = random.Random(15)
    while not stop.is_set():
        await asyncio.sleep(0.02)
        if emulator.faults.pending().get("push", 0) >= 3:  # the requests have not caught up: queue no more
            continue
        roll = rng.random()
        if roll < 0.4:
            emulator.fail_next("push", 500, 1, after_executing=False)
        elif roll < 0.8:
            emulator.fail_next("push", 500, 1, after_executing=True)
        else:
            emulator.fail_next("push", 429, 1, body={"message": "The API rate limit has been exceeded. Try again later."})


async def _campaign(base_url: str, token: str, body: dict) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client:
        async with client.post(f"{base_url}/api/v1/campaigns", json=body) as response:
            assert response.status == 201, await response.text()
            return await response.json()


async def _status(base_url: str, token: str, campaign_id: int) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client:
        async with client.get(f"{base_url}/api/v1/campaigns/{campaign_id}") as response:
            return await response.json() if response.status == 200 else {}


async def _run(emulator, tmp_path, redis_prefix, *, database_url: str | None, scenario: str) -> None:
    emulator.set_rate_limit("push", PUSH_LIMIT)
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server())
        postgres = None
        if database_url is None:
            postgres = await stack.enter_async_context(postgres_cluster())
            await asyncio.to_thread(upgrade, postgres.url)
            database_url = postgres.url
        users, token = await _customers(database_url, emulator)
        production = Production(database_url, redis.url, emulator, tmp_path, redis_prefix)
        await production.start(stack, "serve", "serve-1")
        workers = [await production.start(stack, "worker", f"worker-{n}") for n in (1, 2)]
        await production.workers_ready(*workers)
        base_url = f"http://127.0.0.1:{production.port}"

        stop = asyncio.Event()
        faults = asyncio.create_task(_faults(emulator, stop))
        campaign = await _campaign(base_url, token, {
            "name": "障害試験", "rule": {"field": "followed", "op": "eq", "value": True}, "quiet_hours": False,
            "frequency_cap": False, "messages": [{"type": "text", "text": "{name}さん、冬のセールです"}]})
        rng = random.Random(5)
        started = 2
        try:
            async def completed() -> bool:
                return (await _status(base_url, token, campaign["id"])).get("status") == "completed"

            if scenario == "kills":
                # A worker killed every 2–5 s while the campaign runs (each replacement ready first).
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(2, 5))
                    if await completed():
                        break
                    workers.pop(0).kill()
                    started += 1
                    workers.append(await production.start(stack, "worker", f"worker-{started}"))
                    await production.workers_ready(workers[-1])
            else:
                await asyncio.sleep(2)
                await asyncio.to_thread(postgres.restart_immediate)
            stop.set()
            await eventually(completed, timeout=SETTLE_SECONDS, what="the campaign to complete")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{production.logs()[-20000:]}") from None
        finally:
            stop.set()
            await faults

        received = {user: 0 for user in users}
        for user in users:
            received[user] = sum(1 for m in emulator.messages_to(user) if m.via == "push")
        duplicates = {user: count for user, count in received.items() if count > 1}
        gaps = [user for user, count in received.items() if count == 0]
        assert not duplicates and not gaps, (len(duplicates), len(gaps), production.logs()[-20000:])
        stats = (await _status(base_url, token, campaign["id"]))["stats"]
        assert (stats["sent"], stats["failed"], stats["undetermined"], stats["pending"]) == (RECIPIENTS, 0, 0, 0), stats
        if scenario == "kills":
            assert started >= 4, "at least two workers were killed mid-campaign"
        assert "Traceback" not in production.logs(), production.logs()[-20000:]


async def test_workers_killed_mid_campaign_under_line_faults_nothing_twice_nothing_missed(database_url, emulator, tmp_path, redis_prefix):
    await _run(emulator, tmp_path, redis_prefix, database_url=database_url, scenario="kills")


async def test_postgresql_restarted_mid_campaign_nothing_twice_nothing_missed(emulator, tmp_path, redis_prefix):
    await _run(emulator, tmp_path, redis_prefix, database_url=None, scenario="postgres-restart")
