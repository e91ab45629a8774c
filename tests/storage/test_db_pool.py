"""The pool without `pool_pre_ping` (storage/db.py): a connection that the server closed
while it sat in the pool is replaced, not handed out; one closed under steady use fails
once as a lost connection (the outage path) and the pool then replaces every connection
it had, so the next try works."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kizuna.storage import db
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(TEST_DATABASE_URL is None, reason="PostgreSQL: a server that closes connections")


async def _backend_pids(sessions) -> list[int]:
    """The server pids of `count` pooled connections, all checked in again."""
    async with sessions() as first, sessions() as second:
        pids = [
            (await first.execute(sa.text("SELECT pg_backend_pid()"))).scalar(),
            (await second.execute(sa.text("SELECT pg_backend_pid()"))).scalar(),
        ]
    return pids


async def _terminate(database_url: str, pids: list[int]) -> None:
    engine = db.create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            for pid in pids:
                assert (await connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})).scalar()
    finally:
        await engine.dispose()


async def test_a_connection_closed_while_idle_in_the_pool_is_replaced_before_use(database_url, monkeypatch):
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
    engine = db.create_engine(database_url)
    sessions = db.session_factory(engine)
    try:
        pids = await _backend_pids(sessions)
        await _terminate(database_url, pids)  # as a server restart would
        for _ in range(3):
            async with sessions() as session:
                pid = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
            assert pid not in pids
    finally:
        await engine.dispose()


async def test_a_connection_closed_under_steady_use_fails_once_then_the_pool_is_renewed(database_url, monkeypatch):
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 3600.0)
    engine = db.create_engine(database_url)
    sessions = db.session_factory(engine)
    try:
        pids = await _backend_pids(sessions)
        await _terminate(database_url, pids)
        with pytest.raises(Exception) as failed:
            async with sessions() as session:
                await session.execute(sa.text("SELECT 1"))
        assert db.lost_connection(failed.value) and db.is_unavailable(failed.value)
        # Every connection of the pool older than the failure is dropped: no second failure.
        async with sessions() as first, sessions() as second:
            for session in (first, second):
                assert (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar() not in pids
    finally:
        await engine.dispose()


async def test_the_autocommit_look_up_leaves_the_pooled_connection_transactional(database_url):
    """events.any_pending reads in autocommit; the connection goes back to the pool as it was."""
    from kizuna.storage import events

    engine = db.create_engine(database_url, pool_size=1)
    sessions = db.session_factory(engine)
    try:
        async with sessions() as session:
            pid = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
        assert not await events.any_pending(sessions, "U-nobody")
        with pytest.raises(RuntimeError):
            async with db.transaction(sessions) as session:
                assert (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar() == pid  # the same connection
                await session.execute(sa.text("CREATE TEMPORARY TABLE rolled_back (x int)"))
                raise RuntimeError("roll back")
        async with sessions() as session:
            assert (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar() == pid
            assert (await session.execute(sa.text("SELECT to_regclass('pg_temp.rolled_back')"))).scalar() is None
    finally:
        await engine.dispose()
