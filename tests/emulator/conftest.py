"""Fixtures for the LINE emulator's tests: the emulator on a real port, the real SDK pointed at
it, and a tiny fake bot that verifies webhook signatures with line-bot-sdk's WebhookParser."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from linebot.v3.messaging import AsyncApiClient, AsyncMessagingApi, AsyncMessagingApiBlob, Configuration

from kizuna.emulator import Emulator
from kizuna.emulator.testing import FakeBot, FakeClock

# The same values are spelled out in the test modules (which cannot import this conftest).
SECRET = "test-channel-secret"
TOKEN = "test-access-token"


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def secret() -> str:
    return SECRET


class Running:
    """The emulator, its server and its base URL."""

    def __init__(self, emu: Emulator, server: TestServer) -> None:
        self.emu = emu
        self.server = server
        self.base_url = str(server.make_url("")).rstrip("/")

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def running(clock: FakeClock) -> AsyncIterator[Running]:
    emu = Emulator(channel_secret=SECRET, access_token=TOKEN, clock=clock)
    server = TestServer(emu.create_app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield Running(emu, server)
    finally:
        await server.close()


@pytest.fixture
def emu(running: Running) -> Emulator:
    return running.emu


@pytest.fixture
async def sdk(running: Running) -> AsyncIterator[tuple[AsyncMessagingApi, AsyncMessagingApiBlob]]:
    config = Configuration(host=running.base_url, access_token=TOKEN)
    async with AsyncApiClient(config) as client:
        yield AsyncMessagingApi(client), AsyncMessagingApiBlob(client)


@pytest.fixture
def line(sdk: tuple[AsyncMessagingApi, AsyncMessagingApiBlob]) -> AsyncMessagingApi:
    return sdk[0]


@pytest.fixture
def blob(sdk: tuple[AsyncMessagingApi, AsyncMessagingApiBlob]) -> AsyncMessagingApiBlob:
    return sdk[1]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def bot(running: Running) -> AsyncIterator[FakeBot]:
    fake = FakeBot(SECRET)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    running.emu.webhook_url = str(server.make_url("/callback"))
    try:
        yield fake
    finally:
        await server.close()
