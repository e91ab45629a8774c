"""storage/friend_sources.py on both backends: the LINE Login callback and the follow of one person
arriving at the same moment still meet (whichever commits second resolves), and the counts."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from kizuna.storage import audit, friend_sources, tags
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Customer, FriendSourceAttribution
from kizuna.storage.types import utcnow


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_a_callback_racing_the_follow_still_resolves(sessions):
    now = utcnow()
    async with transaction(sessions) as session:
        source = await friend_sources.create(session, "店頭POP", "店頭", actor=audit.CLI)
    line_user_id = "U" + secrets.token_hex(16)

    async def callback() -> friend_sources.Outcome:
        async with transaction(sessions) as session:
            return await friend_sources.record_login(session, source, line_user_id, friendship_changed=True, is_friend=True, now=now)

    # The follow's transaction stores the customer and finds nothing pending; before it commits,
    # the callback runs. It must wait for the follow (per-person lock / SQLite's serial writes)
    # and then see the customer, or the tag would never be added.
    async with transaction(sessions) as follow:
        customer = Customer(line_user_id=line_user_id, followed=True, followed_at=now)
        follow.add(customer)
        await follow.flush()
        assert await friend_sources.resolve_on_follow(follow, customer, now) is None
        racing = asyncio.create_task(callback())
        with pytest.raises(TimeoutError):  # held back while the follow's transaction is open
            await asyncio.wait_for(asyncio.shield(racing), 0.5)
    assert await asyncio.wait_for(racing, 10) == friend_sources.Outcome.ATTRIBUTED
    async with sessions() as session:
        found = await session.get(FriendSourceAttribution, line_user_id)
        assert found.resolved_at is not None and found.customer_id == customer.id
        assert await tags.of_customer(session, customer.id) == ["店頭"]
        [row] = await friend_sources.stats(session)
        assert (row.follows, row.blocks, row.friends) == (1, 0, 1)


async def test_first_source_wins_and_a_pending_one_can_be_taken_over(sessions):
    now = utcnow()
    async with transaction(sessions) as session:
        first = await friend_sources.create(session, "A", None, actor=audit.CLI)
        second = await friend_sources.create(session, "B", None, actor=audit.CLI)
        pending_person, friend = "U" + secrets.token_hex(16), "U" + secrets.token_hex(16)
        # logged in through A without adding the friend, then through B: B may still take them
        assert await friend_sources.record_login(session, first, pending_person, friendship_changed=False, is_friend=False, now=now) == "attributed"
        assert await friend_sources.record_login(session, second, pending_person, friendship_changed=False, is_friend=False, now=now) == "attributed"
        assert (await session.get(FriendSourceAttribution, pending_person)).source_id == second.id
        # added through A (resolved): B cannot take them any more
        session.add(Customer(line_user_id=friend, followed=True, followed_at=now))
        await session.flush()
        assert await friend_sources.record_login(session, first, friend, friendship_changed=True, is_friend=True, now=now) == "attributed"
        assert await friend_sources.record_login(session, second, friend, friendship_changed=True, is_friend=True, now=now) == "kept"
        assert (await session.get(FriendSourceAttribution, friend)).source_id == first.id
    async with sessions() as session:
        counted = {row.source.name: row.follows for row in await friend_sources.stats(session)}
    assert counted == {"A": 1, "B": 0}  # the pending one is nobody's follow yet
