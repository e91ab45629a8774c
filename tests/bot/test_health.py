"""A dependency that goes away: /healthz names it (503), the webhook answers 503 (LINE
redelivers) instead of failing, and everything carries on when it is back - without a
restart. Redis and PostgreSQL here are the test's own, so they can be stopped."""

from __future__ import annotations

import asyncio
import shutil

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kizuna.bot.app import create_app
from kizuna.storage.migrate import upgrade
from tests.conftest import eventually, make_settings
from tests.services import postgres_cluster, redis_server


async def _health(server: TestServer) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as client, client.get(server.make_url("/healthz")) as response:
        return response.status, await response.json()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_healthz_names_redis_while_it_is_down(database_url, emulator, redis_prefix):
    async with redis_server() as redis:
        settings = make_settings(database_url, emulator.base_url, redis_url=redis.url, redis_prefix=redis_prefix)
        server = TestServer(create_app(settings, run_worker=True), host="127.0.0.1")
        await server.start_server()
        try:
            assert await _health(server) == (200, {"status": "ok", "database": "ok", "redis": "ok"})
            await asyncio.to_thread(redis.kill)
            status, body = await _health(server)
            assert status == 503 and body["status"] == "unavailable" and body["database"] == "ok"
            assert body["redis"].startswith("error:")

            # Events still get stored and acknowledged while Redis is away: the database is
            # the truth, and the sweeper queues them once Redis is back.
            emulator.webhook_url = str(server.make_url("/callback"))
            user = emulator.add_user(display_name="待つ 人")
            assert (await emulator.send_text(user.user_id, "届いていますか")).status == 200
            await asyncio.to_thread(redis.start)

            async def healthy() -> bool:
                return (await _health(server))[0] == 200

            await eventually(healthy, what="/healthz to be 200 again")
            [reply] = await emulator.wait_for_messages(user.user_id, 1, timeout=20)
            assert reply.message["text"] == "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"
        finally:
            await server.close()


@pytest.mark.skipif(shutil.which("initdb") is None, reason="needs initdb and pg_ctl")
async def test_without_the_database_the_webhook_says_503_and_the_worker_waits_for_it(emulator):
    async with postgres_cluster() as postgres:
        await asyncio.to_thread(upgrade, postgres.url)
        await asyncio.to_thread(postgres.stop)
        # Started while the database is down: nothing exits, the worker keeps trying.
        settings = make_settings(postgres.url, emulator.base_url, redis_url=None)
        server = TestServer(create_app(settings, run_worker=True), host="127.0.0.1")
        await server.start_server()
        try:
            status, body = await _health(server)
            assert status == 503 and body["database"].startswith("error:") and body["redis"] == "not configured"

            emulator.webhook_url = str(server.make_url("/callback"))
            user = emulator.add_user(display_name="再送 さん")
            refused = await emulator.send_text(user.user_id, "届いていますか")
            assert refused.status == 503  # not stored: LINE redelivers

            await asyncio.to_thread(postgres.start)
            async def healthy() -> bool:
                return (await _health(server))[0] == 200

            await eventually(healthy, timeout=20, what="/healthz to be 200 once PostgreSQL is back")
            assert (await emulator.redeliver(refused.event)).status == 200
            [reply] = await emulator.wait_for_messages(user.user_id, 1, timeout=20)
            assert reply.message["text"] == "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"
        finally:
            await server.close()
