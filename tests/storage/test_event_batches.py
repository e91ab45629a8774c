"""A worker's batch of events (storage/events.py): one event per source claimed in one
statement, oldest first, and done marks fenced by each claim's attempt."""

from __future__ import annotations

from datetime import datetime, timezone

from kizuna.storage import customers, events
from kizuna.storage.db import create_engine, session_factory, transaction


def _event(webhook_event_id: str, source: str, timestamp: int) -> dict:
    return events.event_row(
        webhook_event_id=webhook_event_id, event_type="message", source_key=source, line_user_id=source,
        event_timestamp=timestamp, is_redelivery=False, received_at=datetime.now(timezone.utc),
        payload={"type": "message", "message": {"type": "text", "text": webhook_event_id}},
    )


async def test_one_event_per_source_oldest_first_and_a_stale_claim_is_not_marked_done(database_url):
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with engine.begin() as connection:
            # Source A's events arrive out of LINE's order: its oldest is the second stored.
            await events.store_events(connection, [_event("a-late", "UA", 2_000), _event("a-early", "UA", 1_000), _event("b-only", "UB", 1_500)])
        async with transaction(sessions) as session:
            await customers.get_or_create(session, "UB", None)

        first = await events.claim_next_many(sessions, ["UA", "UB", "UC"])
        assert sorted((row.webhook_event_id, row.attempts, known) for row, known in first) == [("a-early", 1, False), ("b-only", 1, True)]

        # Claimed again (a worker that lost its hold, and another took over): attempt 2.
        again = await events.claim_next_many(sessions, ["UB"])
        assert [(row.webhook_event_id, row.attempts) for row, _known in again] == [("b-only", 2)]
        async with transaction(sessions) as session:
            done = await events.mark_done_many(session, [(row.id, row.attempts) for row, _known in first])
        # The stale claim of b-only (attempt 1) is not marked done; a-early is.
        assert done == {row.id for row, _known in first if row.webhook_event_id == "a-early"}

        # A's next event comes only now that its oldest is done; B's is still pending.
        third = await events.claim_next_many(sessions, ["UA", "UB"])
        assert sorted((row.webhook_event_id, row.attempts) for row, _known in third) == [("a-late", 1), ("b-only", 3)]
        assert await events.pending_among(sessions, ["UA", "UB", "UC"]) == {"UA", "UB"}
    finally:
        await engine.dispose()
