"""Live updates in the console: server-sent events from the broadcaster, over real HTTP. A
handoff made by the bot reaches a support member's stream; a marketer's stream is never sent
a conversation; a stream ends when its session does, and when the server stops. On
PostgreSQL + Redis: a message stored by a `kizuna worker` process reaches a console served by
another process."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from kizuna.bot.app import create_app
from kizuna.bot.keys import SESSIONS
from kizuna.console.views import live
from kizuna.storage import audit, staff_sessions
from kizuna.storage import staff as staff_store
from kizuna.storage.db import transaction
from kizuna.storage.models import Staff, StaffSession
from kizuna.storage.types import utcnow
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, eventually, make_settings, start_kizuna
from tests.console.helpers import Console, stored_customer
from tests.flows.test_registration import Chat
from tests.services import free_port, kizuna_env, kizuna_process

WAIT = 15.0


class Stream:
    """An EventSource played by aiohttp: the events of /console/live, one at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> tuple[str, dict]:
        kind, data = "message", ""
        async with asyncio.timeout(WAIT):
            while True:
                line = (await self.response.content.readline()).decode()
                if line == "":
                    return "end", {}
                line = line.rstrip("\n")
                if line == "":
                    if data:
                        return kind, json.loads(data)
                    continue
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")

    async def until(self, kind: str) -> dict:
        while True:
            got, data = await self.next()
            if got == kind:
                return data
            assert got != "end", f"the stream ended before a {kind} event"


async def open_stream(client: aiohttp.ClientSession, base_url: str, cookie: str) -> Stream:
    response = await client.get(f"{base_url}/console/live", headers={"Cookie": f"kizuna_session={cookie}"}, allow_redirects=False)
    assert response.status == 200 and response.content_type == "text/event-stream"
    stream = Stream(response)
    await stream.until("ready")  # subscribed: nothing published from here on is missed
    return stream


async def support_member(sessions) -> int:
    async with transaction(sessions) as session:
        new = await staff_store.prepare(email="support@example.com", display_name="サポート", role="support", password="correct horse battery")
        return (await staff_store.create(session, new, actor=audit.CLI)).id


async def session_for(sessions, member_id: int) -> str:
    async with transaction(sessions) as session:
        _row, plain = await staff_sessions.start(session, await session.get(Staff, member_id), now=utcnow())
    return plain


async def test_a_handoff_by_the_bot_reaches_support_but_never_a_marketer(console: Console):
    support = await console.add_staff("support@example.com", "support")
    marketer = await console.add_staff("mika@example.com", "marketer")
    emulator = console.kizuna.emulator
    async with aiohttp.ClientSession() as client:
        watching = await open_stream(client, console.url, await session_for(console.sessions, support.id))
        other = await open_stream(client, console.url, await session_for(console.sessions, marketer.id))
        user = emulator.add_user(display_name="見守り 花子")
        await Chat(emulator, user.user_id).say("担当者")
        update = await watching.until("conversation")
        customer_id = await stored_customer(console.kizuna, user.user_id)
        assert update == {"type": "conversation", "conversation_id": update["conversation_id"], "customer_id": customer_id,
                          "status": "pending", "assignee_id": None}
        await emulator.send_text(user.user_id, "まだですか")
        assert (await watching.until("message"))["conversation_id"] == update["conversation_id"]

        browser = await console.logged_in(marketer)
        await browser.post(f"/console/customers/{customer_id}/tags", {"tag": "VIP"})
        assert await other.next() == ("customer", {"type": "customer", "customer_id": customer_id})  # nothing before it
        assert await watching.until("customer") == {"type": "customer", "customer_id": customer_id}
        watching.response.close()
        other.response.close()


def test_what_each_role_is_sent():
    conversation = {"type": "conversation", "conversation_id": 1, "customer_id": 2, "status": "open", "assignee_id": 3, "secret": "x"}
    assert live.visible(conversation, "support") == {k: v for k, v in conversation.items() if k != "secret"}
    assert live.visible(conversation, "marketer") is None
    assert live.visible({"type": "message", "customer_id": 2}, "marketer") is None
    assert live.visible({"type": "reload"}, "marketer") == {"type": "reload"}
    assert live.visible({"type": "campaign", "campaign_id": 1}, "admin") is None  # nobody decided yet: nobody


async def test_a_stream_ends_with_its_session(console: Console, monkeypatch):
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(live, "CHECK_SECONDS", 0.0)
    support = await console.add_staff("support@example.com", "support")
    cookie = await session_for(console.sessions, support.id)
    async with aiohttp.ClientSession() as client:
        stream = await open_stream(client, console.url, cookie)
        await console.execute(sa.update(StaffSession).values(ended_at=utcnow(), ended_reason="ended_by_admin"))
        assert await stream.until("logout") == {}
        assert await stream.next() == ("end", {})
        response = await client.get(f"{console.url}/console/live", headers={"Cookie": f"kizuna_session={cookie}"}, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/console/login")


async def test_a_stream_ends_when_the_server_stops(settings, emulator):
    server, _token = await start_kizuna(settings, emulator)
    cookie = await session_for(server.app[SESSIONS], await support_member(server.app[SESSIONS]))
    async with aiohttp.ClientSession() as client:
        stream = await open_stream(client, str(server.make_url("")).rstrip("/"), cookie)
        async with asyncio.timeout(WAIT):  # never the 60 s aiohttp gives a request still running
            await server.close()
        assert await stream.next() == ("end", {})


@pytest.mark.skipif(TEST_REDIS_URL is None or TEST_DATABASE_URL is None, reason="needs PostgreSQL + Redis (KIZUNA_TEST_*)")
async def test_a_message_stored_by_a_worker_process_reaches_a_console_served_by_another(database_url, emulator, redis_prefix, redis_cleanup, tmp_path):
    # This process serves the console (and the webhook) and runs no worker; a `kizuna worker`
    # process handles the events: what it stores reaches this console through Redis pub/sub.
    settings = make_settings(database_url, emulator.base_url, redis_prefix=redis_prefix)
    server = TestServer(create_app(settings, run_worker=False), host="127.0.0.1")
    await server.start_server()
    emulator.webhook_url = str(server.make_url("/callback"))
    env = kizuna_env(database_url, emulator.base_url, free_port(), TEST_REDIS_URL, redis_prefix)
    try:
        async with kizuna_process("worker", env, tmp_path / "worker.log") as worker:
            await eventually(lambda: _logged(worker, "worker ready"), timeout=30, what="the worker to be ready")
            cookie = await session_for(server.app[SESSIONS], await support_member(server.app[SESSIONS]))
            base = str(server.make_url("")).rstrip("/")
            async with aiohttp.ClientSession() as client:
                stream = await open_stream(client, base, cookie)
                user = emulator.add_user(display_name="別プロセス 花子")
                assert (await emulator.send_text(user.user_id, "担当者")).status == 200
                handoff = await stream.until("conversation")
                assert handoff["status"] == "pending"
                assert (await emulator.send_text(user.user_id, "注文の件です")).status == 200
                message = await stream.until("message")
                assert message["conversation_id"] == handoff["conversation_id"]
                stream.response.close()
                # ... and the page the event makes the browser re-read shows it
                async with client.get(f"{base}/console/conversations/{handoff['conversation_id']}",
                                      headers={"Cookie": f"kizuna_session={cookie}", "X-Kizuna-Refresh": "1"}) as response:
                    assert "注文の件です" in await response.text()
        assert "worker ready" in worker.log()
    finally:
        await server.close()


async def _logged(process, text: str) -> bool:
    return text in process.log()
