"""Real process kills: an acknowledged event survives the death of the process
that was handling it, and is answered once after a restart."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kizuna.storage.db import create_engine
from kizuna.storage.models import Delivery, InboundEvent
from tests.conftest import TEST_REDIS_URL, eventually
from tests.services import free_port, kizuna_env, kizuna_process


async def _event_attempts(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(sa.select(sa.func.coalesce(sa.func.max(InboundEvent.attempts), 0)))).scalar_one()
    finally:
        await engine.dispose()


async def test_embedded_serve_killed_mid_event_answers_after_restart(database_url, emulator, redis_prefix, tmp_path):
    port = free_port()
    env = kizuna_env(database_url, emulator.base_url, port, None, redis_prefix)
    emulator.webhook_url = f"http://127.0.0.1:{port}/callback"
    user = emulator.add_user(display_name="山田")
    # The first contact fetches the profile; holding it keeps the event mid-processing.
    emulator.delay_next("profile", 30.0)

    async with kizuna_process("serve", env, tmp_path / "serve.log", health_port=port) as serve:
        result = await emulator.send_text(user.user_id, "届いていますか")
        assert result.status == 200  # acknowledged: from here on it must not be lost
        await eventually(lambda: _attempt_started(database_url), what="processing to start")
        serve.kill()
    assert emulator.messages_to(user.user_id) == []

    async with kizuna_process("serve", env, tmp_path / "serve.log", health_port=port):
        [reply] = await emulator.wait_for_messages(user.user_id, 1, timeout=20)
    assert reply.message["text"] == "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"
    assert len(emulator.messages_to(user.user_id)) == 1


@pytest.mark.skipif(TEST_REDIS_URL is None, reason="production mode needs KIZUNA_TEST_REDIS_URL")
async def test_worker_killed_mid_event_is_processed_by_the_next_worker(database_url, emulator, redis_prefix, redis_cleanup, tmp_path):
    port = free_port()
    env = kizuna_env(database_url, emulator.base_url, port, TEST_REDIS_URL, redis_prefix)
    emulator.webhook_url = f"http://127.0.0.1:{port}/callback"
    user = emulator.add_user(display_name="佐藤")
    emulator.delay_next("profile", 30.0)

    async with kizuna_process("serve", env, tmp_path / "serve.log", health_port=port):
        async with kizuna_process("worker", env, tmp_path / "worker.log") as worker:
            result = await emulator.send_text(user.user_id, "こんにちは")
            assert result.status == 200
            await eventually(lambda: _attempt_started(database_url), timeout=20, what="the worker to start the event")
            worker.kill()
        assert emulator.messages_to(user.user_id) == []
        async with kizuna_process("worker", env, tmp_path / "worker.log"):
            [reply] = await emulator.wait_for_messages(user.user_id, 1, timeout=20)
    assert reply.message["text"] == "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。"
    assert len(emulator.messages_to(user.user_id)) == 1


async def _attempt_started(database_url: str) -> bool:
    return await _event_attempts(database_url) >= 1


async def test_killed_while_pushing_the_customer_gets_the_message_once(database_url, emulator, redis_prefix, tmp_path):
    """The reply is refused, so the bot pushes; it is killed while the push is in
    flight (LINE executes it anyway). After the restart the push is retried with the
    same X-Line-Retry-Key: LINE answers 409 and nothing is sent twice."""
    port = free_port()
    env = kizuna_env(database_url, emulator.base_url, port, None, redis_prefix)
    emulator.webhook_url = f"http://127.0.0.1:{port}/callback"
    user = emulator.add_user(display_name="鈴木")
    emulator.fail_next("reply", status=400, body={"message": "Invalid reply token"})
    emulator.delay_next("push", 3.0)  # executed by "LINE" after 3 s, whoever is still listening

    async with kizuna_process("serve", env, tmp_path / "serve.log", health_port=port) as serve:
        assert (await emulator.send_text(user.user_id, "クーポンありますか")).status == 200
        # The sender records "reply refused, push only" right before it pushes; LINE has the
        # push once its delay began (the emulator takes the delay after reading the body).
        await eventually(lambda: _reply_forgotten(database_url), what="the push to be sent")
        await eventually(lambda: _push_arrived(emulator), what="the push to be in flight at LINE")
        serve.kill()
    async with kizuna_process("serve", env, tmp_path / "serve.log", health_port=port):
        await eventually(lambda: _delivery_sent(database_url), timeout=20, what="the delivery to be sent after the restart")
        await eventually(lambda: _both_pushes_answered(emulator), what="the first push to finish at LINE")
    [message] = emulator.messages_to(user.user_id)
    assert message.via == "push"
    pushes = emulator.requests_to("push")
    assert len({request.headers.get("X-Line-Retry-Key") for request in pushes}) == 1


async def _push_arrived(emulator) -> bool:
    return "push:delay" not in emulator.faults.pending()


async def _reply_forgotten(database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(sa.select(Delivery.reply_token, Delivery.attempts))).one_or_none()
            return row is not None and row.attempts >= 1 and row.reply_token is None
    finally:
        await engine.dispose()


async def _both_pushes_answered(emulator) -> bool:
    return sorted(request.status for request in emulator.requests_to("push")) == [200, 409]


async def _delivery_sent(database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(sa.select(Delivery.status))).scalar_one_or_none() == "sent"
    finally:
        await engine.dispose()


async def test_killed_while_linking_the_member_menu_links_it_after_restart(database_url, emulator, redis_prefix, tmp_path):
    """The rich menu switch after registration is an outbox row like a message: a crash
    while LINE is linking it loses nothing, and the restarted server links it."""
    from kizuna.bot import richmenu
    from kizuna.bot.app import line_client_for
    from kizuna.bot.settings import load_settings
    from tests.flows.test_registration import Chat, walk_to

    port = free_port()
    env = kizuna_env(database_url, emulator.base_url, port, None, redis_prefix)
    emulator.webhook_url = f"http://127.0.0.1:{port}/callback"
    line = line_client_for(load_settings(**{"line_channel_secret": env["LINE_CHANNEL_SECRET"], "line_channel_access_token": env["LINE_CHANNEL_ACCESS_TOKEN"],
                                             "line_api_base_url": emulator.base_url, "line_data_api_base_url": emulator.base_url,
                                             "secret_key": env["KIZUNA_SECRET_KEY"], "emulator": False}))
    try:
        member_menu = (await richmenu.setup(line)).menu("registered").rich_menu_id
    finally:
        await line.close()
    user = emulator.add_user(display_name="登録 花子")
    chat = Chat(emulator, user.user_id)

    async with kizuna_process("serve", env, tmp_path / "serve.log", health_port=port) as serve:
        await walk_to(chat, "registration.confirm")
        emulator.delay_next("richmenu_link", 30.0)  # LINE is slow to link: the server dies meanwhile
        await chat.say("登録する")  # done; no coupon is set up in this test, so nothing is said about one
        await eventually(lambda: _rich_menu_delivery_is("sending", database_url), what="the menu link to be in flight")
        serve.kill()
    assert emulator.rich_menu_for(user.user_id).rich_menu_id != member_menu
    messages = len(emulator.messages_to(user.user_id))

    async with kizuna_process("serve", env, tmp_path / "serve.log", health_port=port):
        await eventually(lambda: _rich_menu_delivery_is("sent", database_url), timeout=20, what="the menu link to be sent after the restart")
    assert emulator.rich_menu_for(user.user_id).rich_menu_id == member_menu
    assert len(emulator.messages_to(user.user_id)) == messages  # the replies were not sent again


async def _rich_menu_delivery_is(status: str, database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            found = (await connection.execute(sa.select(Delivery.status).where(Delivery.kind == "rich_menu"))).scalar_one_or_none()
            return found == status
    finally:
        await engine.dispose()
