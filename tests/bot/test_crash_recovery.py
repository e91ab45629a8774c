"""Real process kills: an acknowledged event survives the death of the process
that was handling it, and is answered once after a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import asynccontextmanager

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.storage.db import create_engine
from kizuna.storage.models import Delivery, InboundEvent
from tests.conftest import ACCESS_TOKEN, CHANNEL_SECRET, SECRET_KEY, TEST_REDIS_URL, eventually


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(database_url: str, emulator_url: str, port: int, redis_url: str | None, redis_prefix: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LINE_", "KIZUNA_", "DATABASE_URL", "REDIS_URL", "PORT"))}
    env |= {
        "KIZUNA_SECRET_KEY": SECRET_KEY, "LINE_CHANNEL_SECRET": CHANNEL_SECRET, "LINE_CHANNEL_ACCESS_TOKEN": ACCESS_TOKEN,
        "LINE_API_BASE_URL": emulator_url, "LINE_DATA_API_BASE_URL": emulator_url, "KIZUNA_EMULATOR": "false",
        "DATABASE_URL": database_url, "PORT": str(port), "KIZUNA_SWEEP_INTERVAL": "0.5", "KIZUNA_REDIS_PREFIX": redis_prefix, "KIZUNA_SOURCE_LOCK_SECONDS": "2", "KIZUNA_DELIVERY_CLAIM_SECONDS": "2",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@asynccontextmanager
async def _process(command: str, env: dict[str, str], *, health_port: int | None = None):
    process = subprocess.Popen([sys.executable, "-m", "kizuna.bot.cli", command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if health_port is not None:
            await _wait_healthy(health_port, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _wait_healthy(port: int, process: subprocess.Popen) -> None:
    async def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"process exited: {process.stderr.read().decode()[-2000:]}")
        try:
            async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{port}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(healthy, timeout=30, what="kizuna serve to answer /healthz")


async def _event_attempts(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(sa.select(sa.func.coalesce(sa.func.max(InboundEvent.attempts), 0)))).scalar_one()
    finally:
        await engine.dispose()


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


async def test_embedded_serve_killed_mid_event_answers_after_restart(database_url, emulator, redis_prefix):
    port = _free_port()
    env = _env(database_url, emulator.base_url, port, None, redis_prefix)
    emulator.webhook_url = f"http://127.0.0.1:{port}/callback"
    user = emulator.add_user(display_name="山田")
    # The first contact fetches the profile; holding it keeps the event mid-processing.
    emulator.delay_next("profile", 30.0)

    async with _process("serve", env, health_port=port) as serve:
        result = await emulator.send_text(user.user_id, "届いていますか")
        assert result.status == 200  # acknowledged: from here on it must not be lost
        await eventually(lambda: _attempt_started(database_url), what="processing to start")
        _kill(serve)
    assert emulator.messages_to(user.user_id) == []

    async with _process("serve", env, health_port=port):
        [reply] = await emulator.wait_for_messages(user.user_id, 1, timeout=20)
    assert reply.message["text"] == "メッセージを受け付けました。ありがとうございます。"
    assert len(emulator.messages_to(user.user_id)) == 1


@pytest.mark.skipif(TEST_REDIS_URL is None, reason="production mode needs KIZUNA_TEST_REDIS_URL")
async def test_worker_killed_mid_event_is_processed_by_the_next_worker(database_url, emulator, redis_prefix, redis_cleanup):
    port = _free_port()
    env = _env(database_url, emulator.base_url, port, TEST_REDIS_URL, redis_prefix)
    emulator.webhook_url = f"http://127.0.0.1:{port}/callback"
    user = emulator.add_user(display_name="佐藤")
    emulator.delay_next("profile", 30.0)

    async with _process("serve", env, health_port=port):
        async with _process("worker", env) as worker:
            result = await emulator.send_text(user.user_id, "こんにちは")
            assert result.status == 200
            await eventually(lambda: _attempt_started(database_url), timeout=20, what="the worker to start the event")
            _kill(worker)
        assert emulator.messages_to(user.user_id) == []
        async with _process("worker", env):
            [reply] = await emulator.wait_for_messages(user.user_id, 1, timeout=20)
    assert reply.message["text"] == "メッセージを受け付けました。ありがとうございます。"
    assert len(emulator.messages_to(user.user_id)) == 1


async def _attempt_started(database_url: str) -> bool:
    return await _event_attempts(database_url) >= 1


async def test_killed_while_pushing_the_customer_gets_the_message_once(database_url, emulator, redis_prefix):
    """The reply is refused, so the bot pushes; it is killed while the push is in
    flight (LINE executes it anyway). After the restart the push is retried with the
    same X-Line-Retry-Key: LINE answers 409 and nothing is sent twice."""
    port = _free_port()
    env = _env(database_url, emulator.base_url, port, None, redis_prefix)
    emulator.webhook_url = f"http://127.0.0.1:{port}/callback"
    user = emulator.add_user(display_name="鈴木")
    emulator.fail_next("reply", status=400, body={"message": "Invalid reply token"})
    emulator.delay_next("push", 3.0)  # executed by "LINE" after 3 s, whoever is still listening

    async with _process("serve", env, health_port=port) as serve:
        assert (await emulator.send_text(user.user_id, "クーポンありますか")).status == 200
        # The sender records "reply refused, push only" right before it pushes.
        await eventually(lambda: _reply_forgotten(database_url), what="the push to be in flight")
        _kill(serve)
    async with _process("serve", env, health_port=port):
        await eventually(lambda: _delivery_sent(database_url), timeout=20, what="the delivery to be sent after the restart")
        await eventually(lambda: _both_pushes_answered(emulator), what="the first push to finish at LINE")
    [message] = emulator.messages_to(user.user_id)
    assert message.via == "push"
    pushes = emulator.requests_to("push")
    assert len({request.headers.get("X-Line-Retry-Key") for request in pushes}) == 1


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
