"""Customer metrics refresh benchmark (issue 14 §3, goal: metrics refresh after 10,000 new orders < 2 s).

On a fresh PostgreSQL database seeded by COPY with `--customers` customers and `--orders` orders
(skewed: a few customers buy often, most once or twice), then:

- "incremental, 10,000 orders' customers": `customer_metrics.refresh` for the customers of 10,000
  new orders just stored (what `storage/orders.upsert` runs inside each batch's transaction, here
  for all 10 batches' customers at once);
- "upsert 10,000 orders (10 batches)": `orders.upsert` end to end, metrics included, as the API
  and the CSV import run it;
- "deciles (population)": `customer_metrics.refresh_population` (NTILE over everyone);
- "full refresh": `customer_metrics.refresh_all` (the backfill, `kizuna metrics refresh`);
- "preview preset …": `campaigns.segments.preview` of each preset (count and a sample of 10).

    .venv/bin/python bench/metrics_refresh.py
    .venv/bin/python bench/metrics_refresh.py --customers 1000000 --orders 10000000

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust); a fresh database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import describe_machine, fresh_postgres_database, machine_info  # noqa: E402
from kizuna.storage import customer_metrics, orders  # noqa: E402
from kizuna.storage.db import create_engine, session_factory, transaction  # noqa: E402
from kizuna.storage.migrate import upgrade  # noqa: E402
from kizuna.storage.models import OrderCreate  # noqa: E402

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)


async def seed(dsn: str, customers: int, order_count: int, rng: random.Random) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "customers", columns=["id", "followed", "blocked", "registered", "marketing_opt_in", "created_at"],
            records=((i, True, False, False, False, NOW) for i in range(1, customers + 1)),
        )
        await connection.execute(f"SELECT setval('customers_id_seq', {customers})")
        # Pareto-ish: customer ids drawn with a heavy head, so frequency is skewed like a real shop's.
        weights = [1 / (i ** 0.8) for i in range(1, customers + 1)]
        owners = rng.choices(range(1, customers + 1), weights=weights, k=order_count)
        records = ((f"S-{n}", owner, NOW - timedelta(days=rng.random() * 1000), rng.randint(500, 30000),
                    "completed" if rng.random() > 0.05 else "cancelled", "x", NOW, NOW) for n, owner in enumerate(owners))
        await connection.copy_records_to_table(
            "orders", columns=["external_id", "customer_id", "ordered_at", "total", "status", "fingerprint", "created_at", "updated_at"],
            records=records,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def timed(label: str, work) -> float:
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    print(f"{label:<55} {elapsed * 1000:9.0f} ms", flush=True)
    return elapsed


async def run(url: str, customers: int, order_count: int, rng: random.Random) -> None:
    started = time.perf_counter()
    await seed(url.replace("postgresql+asyncpg://", "postgresql://"), customers, order_count, rng)
    print(f"seeded {customers:,} customers, {order_count:,} orders in {time.perf_counter() - started:.1f} s", flush=True)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        async def full() -> None:
            async with transaction(sessions) as session:
                await customer_metrics.refresh_all(session, now=NOW)

        await timed("full refresh (backfill)", full)

        # 10,000 new orders for existing customers, stored directly, then their metrics refreshed.
        touched = [rng.randint(1, customers) for _ in range(10_000)]

        async def incremental() -> None:
            async with transaction(sessions) as session:
                await customer_metrics.refresh(session, touched, now=NOW)

        import asyncpg
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        await connection.copy_records_to_table(
            "orders", columns=["external_id", "customer_id", "ordered_at", "total", "status", "fingerprint", "created_at", "updated_at"],
            records=[(f"N-{n}", owner, NOW, 4000, "completed", "x", NOW, NOW) for n, owner in enumerate(touched)],
        )
        await connection.close()
        await timed(f"incremental, 10,000 orders' customers ({len(set(touched)):,})", incremental)

        batches = [[OrderCreate.model_validate({
            "external_id": f"U-{b}-{n}", "ordered_at": NOW.isoformat(), "total": 3300,
            "email": f"bench{rng.randint(1, customers // 2)}@example.com",
            "items": [{"sku": "SH-01", "category": "ヘアケア", "unit_price": 3300}]}) for n in range(1000)] for b in range(10)]

        async def upsert_all() -> None:
            for batch in batches:
                async with transaction(sessions) as session:
                    await orders.upsert(session, batch, now=NOW, source="bench")

        await timed("upsert 10,000 orders (10 batches), metrics incl.", upsert_all)

        async def population() -> None:
            async with transaction(sessions) as session:
                await customer_metrics.refresh_population(session)

        await timed("deciles (population)", population)

        # What the kept rows are for: each preset's preview (count + sample) over the whole population.
        from kizuna.campaigns import segments

        for preset in segments.presets(NOW):
            async def preview(rule=preset.rule) -> None:
                async with sessions() as session:
                    await segments.preview(session, rule, now=NOW)

            await timed(f"preview preset {preset.key}", preview)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    print(describe_machine(machine_info()))
    with fresh_postgres_database("kizuna_bench_metrics") as name:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        asyncio.run(run(url, args.customers, args.orders, random.Random(args.seed)))


if __name__ == "__main__":
    main()
