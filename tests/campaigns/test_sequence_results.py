"""The per-step results query (storage/sequences.py `step_results`) on the real database (SQLite,
and PostgreSQL with KIZUNA_TEST_DATABASE_URL): deliveries counted by status per step; orders
attributed to the last step that reached the customer before the order, within 7 days of it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kizuna.storage import sequences as store
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Customer, Delivery, Order, StepSequence

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)
STEP = {"delay_minutes": 0, "delay_from": "previous", "messages": [{"type": "text", "text": "x"}], "coupon_id": None}


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_each_order_counts_for_the_last_step_that_reached_the_customer_within_7_days(sessions):
    async with transaction(sessions) as session:
        sequence = StepSequence(name="s", trigger="registered", steps=[STEP, STEP, STEP], created_at=T0, updated_at=T0)
        other = StepSequence(name="other", trigger="registered", steps=[STEP], created_at=T0, updated_at=T0)
        people = [Customer(line_user_id=f"U{index:032x}", followed=True) for index in range(4)]
        session.add_all([sequence, other, *people])
        await session.flush()
        a, b, c, d = (person.id for person in people)

        def delivery(customer: int, step: int, status: str = "sent", at: datetime | None = None, of: int | None = None) -> Delivery:
            return Delivery(customer_id=customer, sender_type="sequence", sender_id=f"sequence:{of or sequence.id}:{step}", messages=[],
                            retry_key=f"{customer}-{step}-{of or sequence.id}", status=status, sent_at=at, created_at=T0)

        def order(customer: int, at: datetime, total: int, status: str = "completed") -> Order:
            return Order(external_id=f"EC-{customer}-{total}", customer_id=customer, ordered_at=at, total=total, status=status,
                         channel="ec", fingerprint="f", created_at=T0, updated_at=T0)

        session.add_all([
            # a: step 0 at T0, step 1 on day 3; an order on day 2 (step 0's) and one on day 4 (step 1's).
            delivery(a, 0, at=T0), delivery(a, 1, at=T0 + timedelta(days=3)),
            order(a, T0 + timedelta(days=2), 1000), order(a, T0 + timedelta(days=4), 2000),
            # b: step 0 only; an order 6 days 23 hours later counts, one 7 days later does not, a cancelled one neither.
            delivery(b, 0, at=T0), order(b, T0 + timedelta(days=6, hours=23), 300), order(b, T0 + timedelta(days=7), 400),
            order(b, T0 + timedelta(days=1), 500, status="cancelled"),
            # c: step 0 failed (LINE refused), step 1 pending: no order is theirs; an order before any step counts for none.
            delivery(c, 0, status="failed"), delivery(c, 1, status="pending"), order(c, T0 - timedelta(hours=1), 700),
            # d: step 2 undetermined, and another sequence's step: not this sequence's.
            delivery(d, 2, status="undetermined"), delivery(d, 0, at=T0, of=other.id), order(d, T0 + timedelta(hours=1), 900),
            # a step removed by an edit (index 5): its deliveries are not any current step's.
            delivery(d, 5, at=T0),
        ])

    async with sessions() as session:
        results = await store.step_results(session, sequence.id, 3)
    got = [(r.sent, r.failed, r.pending, r.buyers, r.orders, r.revenue) for r in results]
    assert got == [(2, 1, 0, 2, 2, 1300), (1, 0, 1, 1, 1, 2000), (0, 1, 0, 0, 0, 0)]
