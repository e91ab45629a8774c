"""Round trips, transactions and CPU per event of the worker, in this process (issue 13's throughput).

A fresh PostgreSQL database with customers in person-owned conversations (bench/_support.py,
as bench/live_latency.py), N text-message events stored for them, then drained by one
`Worker` (in-process queue, no Redis, no LINE calls: the bot stays silent in a conversation),
one source at a time, while counting what the worker sends to PostgreSQL:

- writes on the database sockets (asyncio transport writes: one per round trip, asyncpg
  sends a round trip's messages in one write);
- SQLAlchemy's statements, BEGINs, COMMITs/ROLLBACKs and pool pre-pings;
- the server's own count of transactions (pg_stat_database xact_commit + xact_rollback);
- this process's CPU time.

    .venv/bin/python bench/worker_roundtrips.py --events 2000
    .venv/bin/python bench/worker_roundtrips.py --events 1500 --customers 1600 --batch 16
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.selector_events
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import _support as support  # noqa: E402


async def run(database: str, events_count: int, customers: int, batch: int = 1) -> dict:
    import asyncpg
    from sqlalchemy import event as sa_event

    from kizuna.bot.app import build_services, build_worker
    from kizuna.bot.line import LineClient
    from kizuna.bot.settings import load_settings
    from kizuna.storage import events
    from kizuna.storage.db import create_engine, session_factory
    from kizuna.storage.queue import InProcessQueue, Job, Lease

    dsn = common.PG_BENCH_DSN.format(name=database)
    url = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    conn = await asyncpg.connect(dsn)
    await conn.execute("""INSERT INTO staff (email, display_name, role, password_hash, password_changed_at, locale, created_at)
                          VALUES ('rt@bench.example', 'rt', 'support', 'x', now(), 'ja', now())""")
    staff_id = await conn.fetchval("SELECT id FROM staff")
    await conn.close()
    users = common.bench_user_ids(customers)
    shape = support.Shape(customers=customers, active=customers, resolved=0, timeline=10, background=0)
    await support.load_support_data(dsn, shape, staff_id, line_user_ids=users)

    settings = load_settings(database_url=url, secret_key="rt-secret-key-" + "x" * 32)
    engine = create_engine(url)
    sessions = session_factory(engine)
    queue = InProcessQueue()
    line = LineClient(access_token="x", api_base_url="http://127.0.0.1:9", data_api_base_url="http://127.0.0.1:9")
    services = build_services(settings, sessions=sessions, queue=queue, broadcaster=_Silent(), line=line)
    worker = build_worker(settings, services=services, line=line)

    counts: Counter = Counter()
    sync = engine.sync_engine
    sa_event.listen(sync, "before_cursor_execute", lambda *a, **k: counts.update(["statement"]))
    sa_event.listen(sync, "begin", lambda *a: counts.update(["begin"]))
    sa_event.listen(sync, "commit", lambda *a: counts.update(["commit"]))
    sa_event.listen(sync, "rollback", lambda *a: counts.update(["rollback"]))
    ping = sync.dialect.do_ping

    def counted_ping(dbapi_connection):
        counts.update(["pre-ping"])
        return ping(dbapi_connection)

    sync.dialect.do_ping = counted_ping
    transport = asyncio.selector_events._SelectorSocketTransport
    write = transport.write

    def counted_write(self, data):
        counts.update(["socket write"])
        return write(self, data)

    # Store the events (one per customer in turn), then warm the pool and caches on a few.
    now_ms = int(time.time() * 1000)
    rows = [events.event_row(
        webhook_event_id=f"rt{i:08d}", event_type="message", source_key=users[i % customers], line_user_id=users[i % customers],
        event_timestamp=now_ms + i, is_redelivery=False, received_at=datetime.now(timezone.utc),
        payload={"type": "message", "mode": "active", "timestamp": now_ms + i, "webhookEventId": f"rt{i:08d}",
                 "source": {"type": "user", "userId": users[i % customers]}, "replyToken": f"rt{i}",
                 "deliveryContext": {"isRedelivery": False},
                 "message": {"id": str(i), "type": "text", "quoteToken": "q", "text": f"注文の件、続きです（{i}）"}},
    ) for i in range(events_count + 50)]
    async with engine.connect() as connection:
        await events.store_events(connection, rows)
        await connection.commit()
    async def work(first: int, end: int) -> None:
        """Events first..end-1: one source at a time (`Worker._work_on`), or `batch` sources
        at a time (`EventProcessor.process_batch` and the look for more, as the worker's
        `_work_on_batch` runs them with a RedisQueue: the Redis side is not counted here)."""
        if batch <= 1:
            for i in range(first, end):
                await worker._work_on(Job(users[i % customers]))
            return
        for start in range(first, end, batch):
            keys = list(dict.fromkeys(users[i % customers] for i in range(start, min(end, start + batch))))
            await worker.processor.process_batch({key: Lease() for key in keys})
            await events.pending_among(sessions, keys)

    await work(0, 50)

    async def xacts() -> int:
        c = await asyncpg.connect(common.PG_ADMIN_DSN)
        try:
            await asyncio.sleep(1.2)  # backends report once a second at most
            return await c.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database)
        finally:
            await c.close()

    before = await xacts()
    counts.clear()
    transport.write = counted_write
    cpu, wall = time.process_time(), time.perf_counter()
    await work(50, 50 + events_count)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    transport.write = write
    server_xacts = await xacts() - before - 0  # our own admin connection runs in another database
    async with sessions() as session:
        import sqlalchemy as sa
        pending = (await session.execute(sa.text("SELECT count(*) FROM inbound_events WHERE status <> 'done'"))).scalar()
        # The work was done: every event's timeline row (warm-up included).
        stored = (await session.execute(sa.text("SELECT count(*) FROM interactions WHERE inbound_event_id IS NOT NULL"))).scalar()
    await engine.dispose()
    n = events_count
    return {"events": n, "not done": pending, "timeline rows stored": stored, "cpu_ms_per_event": 1000 * cpu / n, "wall_ms_per_event": 1000 * wall / n,
            "server_transactions_per_event": server_xacts / n, **{f"{k}_per_event": v / n for k, v in sorted(counts.items())}}


class _Silent:
    async def publish(self, update: dict) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1, help="sources per transaction (the worker's batches; 1: one source at a time)")
    args = parser.parse_args()
    with common.fresh_postgres_database("kizuna_rt") as database:
        from kizuna.storage.migrate import upgrade

        upgrade("postgresql+asyncpg://" + common.PG_BENCH_DSN.format(name=database).split("://", 1)[1])
        result = asyncio.run(run(database, args.events, args.customers, args.batch))
    for key, value in result.items():
        print(f"{key:34} {value:.2f}" if isinstance(value, float) else f"{key:34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
