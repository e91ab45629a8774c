"""Fixtures shared by every suite.

Backends: SQLite + in-process queues by default; PostgreSQL and Redis when
KIZUNA_TEST_DATABASE_URL / KIZUNA_TEST_REDIS_URL are set (as `.ci/run` does). The
same tests run on both. LINE is the project's emulator over real HTTP.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from argon2 import PasswordHasher
from aiohttp.test_utils import TestServer

from kizuna.bot.app import create_app
from kizuna.bot.keys import SESSIONS
from kizuna.bot.settings import Settings
from kizuna.emulator import Emulator
from kizuna.storage import staff as staff_store, tokens
from kizuna.storage.db import transaction
from kizuna.storage.migrate import upgrade

TEST_DATABASE_URL = os.environ.get("KIZUNA_TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("KIZUNA_TEST_REDIS_URL") or None
CHANNEL_SECRET = "test-channel-secret-0123456789abcdef"
ACCESS_TOKEN = "test-access-token"
SECRET_KEY = "test-secret-key-" + "x" * 32


def _shared_faq_dir() -> Path | None:
    """../shared/data/faq (the issue's example FAQ and dev queries), where this checkout sees it."""
    root = Path(__file__).resolve().parents[1]
    for base in (root / "shared", root.parent / "shared", Path("/work/shared")):
        if (base / "data" / "faq" / "cosmetics_faq.csv").exists():
            return base / "data" / "faq"
    return None


SHARED_FAQ = _shared_faq_dir()


def pytest_configure(config) -> None:
    """Python's cyclic garbage collector less often than its default (a young-generation pass every
    700 allocations): a run of this suite makes and drops objects by the million (apps, sessions,
    rows, pages) and spent about a tenth of its CPU in collections; every 50,000 it is a third of
    that. Nothing here relies on when a cycle is collected (a test that measures memory collects
    itself)."""
    gc.set_threshold(50_000, 20, 100)


# -- staff passwords ---------------------------------------------------------------

# argon2id at the product's parameters (storage/staff.py: 64 MiB, 3 passes, 4 lanes) costs about
# 0.25 s of CPU a hash or a check, and the console tests make and log in staff by the hundred (over
# a minute of the suite's CPU). Their subject is the console, not the cost: they get argon2id at
# its cheapest, through the module's own HASHER, so hashing, checking and re-hashing a stored hash
# of other parameters at login behave as in the product. A test of the parameters themselves is
# marked `real_password_hashing` (and `kizuna` processes started by a test always hash for real).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_password_hashing(request, monkeypatch) -> None:
    if request.node.get_closest_marker("real_password_hashing") is None:
        monkeypatch.setattr(staff_store, "HASHER", CHEAP_HASHER)


# -- databases -------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_template(tmp_path_factory) -> Callable[[Path], str]:
    """A function giving each test a fresh, migrated database URL.

    SQLite: migrate one file once, copy it per test. PostgreSQL: one database per
    test run, migrated once, truncated per test.
    """
    if TEST_DATABASE_URL is None:
        template = tmp_path_factory.mktemp("db") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{template}")

        def fresh_sqlite(directory: Path) -> str:
            target = directory / "kizuna.db"
            shutil.copyfile(template, target)
            return f"sqlite+aiosqlite:///{target}"

        yield fresh_sqlite
        return

    name = f"kizuna_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _postgres_admin(TEST_DATABASE_URL, f'CREATE DATABASE "{name}"')
    url = TEST_DATABASE_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)

    def fresh_postgres(_directory: Path) -> str:
        _truncate_postgres(url)
        return url

    yield fresh_postgres
    _postgres_admin(TEST_DATABASE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_admin(base_url: str, statement: str) -> None:
    """CREATE/DROP DATABASE on the server of `base_url`: each run gets a database of
    its own, so runs never see each other's rows."""
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(base_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def _truncate_postgres(url: str) -> None:
    """Every table emptied (but `shops` and `alembic_version`) and its id sequence back at its start,
    as TRUNCATE ... RESTART IDENTITY CASCADE did, then the migrations' seeds back.

    DELETE, not TRUNCATE: a test leaves a few rows in a few of 60-odd tables, and TRUNCATE makes
    new files for every table and index it names (about 0.2 s a test, against 0.01 s). The foreign
    keys' triggers are off for the transaction (session_replication_role = replica, as a superuser
    may: the tests' server is reached as `postgres`), so the order of the DELETEs does not matter;
    without that right, TRUNCATE as before."""
    import asyncpg

    async def reset() -> None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            statement = _POSTGRES_RESET.get(url)
            if statement is None:
                statement = _POSTGRES_RESET[url] = await _postgres_reset_statement(connection)
            try:
                async with connection.transaction():
                    await connection.execute(statement)
                    await _reseed_postgres(connection)
            except asyncpg.InsufficientPrivilegeError:
                async with connection.transaction():
                    await connection.execute(_POSTGRES_TRUNCATE.format(tables=", ".join(
                        f'"{name}"' for name in await _postgres_tables(connection))))
                    await _reseed_postgres(connection)
        finally:
            await connection.close()

    asyncio.run(reset())


_POSTGRES_RESET: dict[str, str] = {}  # the reset statement per database (its tables do not change during a run)
_POSTGRES_TRUNCATE = "TRUNCATE {tables} RESTART IDENTITY CASCADE"


async def _postgres_tables(connection) -> list[str]:
    rows = await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT IN ('alembic_version', 'shops')"
    )
    return [row["tablename"] for row in rows]


async def _postgres_reset_statement(connection) -> str:
    """One round trip: the DELETEs, then the used sequences of those tables back at their start."""
    tables = await _postgres_tables(connection)
    sequences = await connection.fetch(
        "SELECT sequence.oid::regclass::text AS name FROM pg_class sequence "
        "JOIN pg_depend owner ON owner.classid = 'pg_class'::regclass AND owner.objid = sequence.oid "
        "AND owner.refclassid = 'pg_class'::regclass "
        "JOIN pg_class owning ON owning.oid = owner.refobjid "
        "WHERE sequence.relkind = 'S' AND owning.relname = ANY($1::text[])",
        tables,
    )
    names = ", ".join("'" + row["name"].replace("'", "''") + "'::regclass" for row in sequences)
    return (
        "SET LOCAL synchronous_commit = off; SET LOCAL session_replication_role = replica; "
        + "".join(f'DELETE FROM "{name}"; ' for name in tables)
        + (f"SELECT setval(seqrelid, seqstart, false) FROM pg_sequence "
           f"WHERE seqrelid IN ({names}) AND pg_sequence_last_value(seqrelid) IS NOT NULL;" if names else "")
    )


async def _reseed_postgres(connection) -> None:
    """What the migrations seed in tables the truncation empties (0023's first privacy notice), and
    the shop settings a test may change, back as a fresh install has them."""
    import importlib
    import json

    first = importlib.import_module("kizuna.storage.migrations.versions.0023_consents")
    await connection.execute(
        "INSERT INTO privacy_notices (version, url, text, purposes, published_at, published_by) "
        "VALUES ('1', 'https://example.com/privacy', $1, $2::jsonb, now(), 'migration 0023')",
        first.FIRST_NOTICE_TEXT, json.dumps(first.FIRST_PURPOSES),
    )
    await connection.execute("UPDATE shops SET withdrawal_data = 'delete'")


@pytest.fixture
def database_url(database_template, tmp_path) -> str:
    return database_template(tmp_path)


@pytest.fixture
def env(database_url, monkeypatch, tmp_path) -> str:
    """The environment of a `kizuna` command run in the test (bot/cli.py `main`): the run's
    database, no Redis, no LINE credentials, no .env from the work tree."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KIZUNA_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("KIZUNA_LOG_LEVEL", "WARNING")
    for name in ("REDIS_URL", "LINE_CHANNEL_SECRET", "LINE_CHANNEL_ACCESS_TOKEN", "KIZUNA_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return database_url


@pytest.fixture
def redis_prefix() -> str:
    return f"kizuna-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_cleanup(redis_prefix) -> AsyncIterator[None]:
    yield
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        client = Redis.from_url(TEST_REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


# -- the LINE emulator and Kizuna ------------------------------------------------


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # LINE's 2 s answer limit is measured where it means something: bench/webhook_wrk.py, Kizuna
    # in its own process. Here the emulator and Kizuna share one event loop on a CI machine that
    # runs two suites side by side, so a slow tick of the bot's worker would read as a webhook
    # timeout. Tests of the timeout itself set their own.
    emu = Emulator(channel_secret=CHANNEL_SECRET, access_token=ACCESS_TOKEN, webhook_timeout=10.0)
    server = TestServer(emu.create_app(), host="127.0.0.1")
    await server.start_server()
    emu.base_url = str(server.make_url("")).rstrip("/")
    yield emu
    await server.close()


def make_settings(database_url: str, emulator_url: str, **overrides) -> Settings:
    values = dict(
        line_channel_secret=CHANNEL_SECRET,
        line_channel_access_token=ACCESS_TOKEN,
        line_api_base_url=emulator_url,
        line_data_api_base_url=emulator_url,
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        secret_key=SECRET_KEY,
        emulator=False,
        sweep_interval_seconds=0.5,
        line_timeout_seconds=2.0,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url, emulator, redis_prefix, redis_cleanup) -> Settings:
    return make_settings(database_url, emulator.base_url, redis_prefix=redis_prefix)


@dataclass
class Kizuna:
    """A running Kizuna (web app + worker) with helpers for tests."""

    server: TestServer
    emulator: Emulator
    settings: Settings
    admin_token: str

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def sessions(self):
        return self.server.app[SESSIONS]

    async def api(self, method: str, path: str, *, token: str | None = None, headers: dict | None = None, **kwargs) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token or self.admin_token}", **(headers or {})}
        async with aiohttp.ClientSession() as client:
            async with client.request(method, self.url + path, headers=headers, **kwargs) as response:
                return response.status, await response.json()

    async def customer_id(self, line_user_id: str) -> int:
        status, body = await self.api("GET", f"/api/v1/customers?line_user_id={line_user_id}")
        assert status == 200 and body["items"], body
        return body["items"][0]["id"]

    async def timeline(self, line_user_id: str) -> list[dict]:
        """The customer's interactions, oldest first."""
        status, body = await self.api("GET", f"/api/v1/customers/{await self.customer_id(line_user_id)}/interactions?limit=200")
        assert status == 200, body
        return list(reversed(body["items"]))


async def start_kizuna(settings: Settings, emulator: Emulator, router=None) -> tuple[TestServer, str]:
    server = TestServer(create_app(settings, run_worker=True, router=router), host="127.0.0.1")
    await server.start_server()
    emulator.webhook_url = str(server.make_url("/callback"))
    async with transaction(server.app[SESSIONS]) as session:
        _token, plain = await tokens.create(session, name="tests", role="admin")
    return server, plain


@pytest.fixture
async def kizuna(settings, emulator) -> AsyncIterator[Kizuna]:
    server, token = await start_kizuna(settings, emulator)
    yield Kizuna(server=server, emulator=emulator, settings=settings, admin_token=token)
    await server.close()


def order_history_anchor() -> datetime:
    """The latest 21:00 UTC (06:00 in Tokyo): where tests draw a generated order history back from.
    From the moment a test ran instead, which orders share a calendar day (a repeat purchase or
    not, for the churn model) moved with the hour, and such tests failed at some hours only."""
    from kizuna.storage.types import utcnow

    latest = utcnow()
    return latest.replace(hour=21, minute=0, second=0, microsecond=0) - timedelta(days=0 if latest.hour >= 21 else 1)


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until `check()` is true, polling briefly; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
