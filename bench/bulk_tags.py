"""Bulk tagging of a segment (issue 14 §5: "tags … in bulk for a segment").

On a fresh PostgreSQL database (migrated to head) seeded by COPY with `--customers` customers, of
whom `--members` are registered members (the segment `{"field": "registered", "op": "eq",
"value": true}`), each customer already holding `--tags-each` other tags (so the tag table is not
empty), it times, `--repeat` times each, in a transaction of its own and committed:

- "bulk add (service)": `storage.tags.bulk_change(add)` over `campaigns.segments.audience` of the
  saved segment, as the API and the console run it: the rule compiled, the segment counted, ONE
  `INSERT … SELECT … ON CONFLICT DO NOTHING` (customers at the 50-tag limit left out), the audit
  entry;
- "baseline INSERT … SELECT by hand": `INSERT INTO customer_tags SELECT id, :tag, :now FROM
  customers WHERE registered`, the same rows, written by hand (no count, no limit, no audit);
- "baseline + ON CONFLICT DO NOTHING": the same by hand with the conflict clause (how much of
  the difference is PostgreSQL's speculative insertion, which the clause costs per row);
- "bulk add again (no-op)": the same bulk add run a second time (changes 0 rows);
- "preview (the console's confirmation)": `storage.tags.bulk_preview`;
- "bulk remove": `storage.tags.bulk_change(remove)` (one `DELETE … WHERE customer_id IN (…)`).

Between repeats the tag's rows are deleted (not timed). Prints min and median.

    .venv/bin/python bench/bulk_tags.py
    .venv/bin/python bench/bulk_tags.py --customers 1000000 --members 100000

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust); a fresh database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench._common import describe_machine, fresh_postgres_database, machine_info  # noqa: E402
from kizuna.campaigns import segments  # noqa: E402
from kizuna.storage import audit, tags  # noqa: E402
from kizuna.storage.db import create_engine, session_factory, transaction  # noqa: E402
from kizuna.storage.migrate import upgrade  # noqa: E402

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
MEMBERS = {"field": "registered", "op": "eq", "value": True}
ACTOR = audit.Actor("bench")


async def seed(dsn: str, customers: int, members: int, tags_each: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "customers", columns=["id", "followed", "blocked", "registered", "marketing_opt_in", "created_at"],
            records=((i, True, False, i <= members, False, NOW) for i in range(1, customers + 1)),
        )
        await connection.execute(f"SELECT setval('customers_id_seq', {customers})")
        await connection.copy_records_to_table(
            "customer_tags", columns=["customer_id", "tag", "created_at"],
            records=((i, f"既存{n}", NOW) for i in range(1, customers + 1) for n in range(tags_each)),
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def timed(work) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


def report(label: str, seconds: list[float], extra: str = "") -> None:
    print(f"{label:<45} min {min(seconds) * 1000:7.0f} ms   median {statistics.median(seconds) * 1000:7.0f} ms {extra}", flush=True)


async def run(url: str, customers: int, members: int, tags_each: int, repeat: int) -> None:
    started = time.perf_counter()
    await seed(url.replace("postgresql+asyncpg://", "postgresql://"), customers, members, tags_each)
    print(f"seeded {customers:,} customers ({members:,} members), {customers * tags_each:,} tags in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    engine = create_engine(url)
    sessions = session_factory(engine)
    times: dict[str, list[float]] = {name: [] for name in ("add", "baseline", "baseline_oc", "again", "preview", "remove")}
    changed: dict[str, int] = {}
    try:
        async with transaction(sessions) as session:
            segment = await segments.create(session, "会員", MEMBERS, now=NOW)

        async def bulk(action: str, key: str) -> None:
            async with transaction(sessions) as session:
                audience = await segments.audience(session, segment.rule, now=NOW)
                done = await tags.bulk_change(session, audience, "会員セール", action, target=f"segment:{segment.id}",
                                              actor=ACTOR, now=NOW)
            changed[key] = done.changed

        async def by_hand(on_conflict: str = "") -> None:
            async with transaction(sessions) as session:
                result = await session.execute(sa.text(
                    "INSERT INTO customer_tags (customer_id, tag, created_at) "
                    f"SELECT id, :tag, :now FROM customers WHERE registered {on_conflict}"), {"tag": "手書き", "now": NOW})
            changed["baseline_oc" if on_conflict else "baseline"] = result.rowcount

        async def preview() -> None:
            async with sessions() as session:
                audience = await segments.audience(session, segment.rule, now=NOW)
                changed["preview"] = (await tags.bulk_preview(session, audience, "会員セール", "add")).changed

        async def clear(tag: str) -> None:
            async with transaction(sessions) as session:
                await session.execute(sa.text("DELETE FROM customer_tags WHERE tag = :tag"), {"tag": tag})
            async with engine.connect() as connection:  # dead rows left by the delete, as autovacuum would
                await (await connection.execution_options(isolation_level="AUTOCOMMIT")).execute(sa.text("VACUUM ANALYZE customer_tags"))

        for _ in range(repeat):
            times["preview"].append(await timed(preview))
            times["add"].append(await timed(lambda: bulk("add", "add")))
            times["again"].append(await timed(lambda: bulk("add", "again")))
            times["remove"].append(await timed(lambda: bulk("remove", "remove")))
            await clear("会員セール")
            times["baseline"].append(await timed(by_hand))
            await clear("手書き")
            times["baseline_oc"].append(await timed(lambda: by_hand("ON CONFLICT DO NOTHING")))
            await clear("手書き")
        report("preview (the console's confirmation)", times["preview"], f"({changed['preview']:,} would change)")
        report("bulk add (service, one INSERT … SELECT)", times["add"], f"({changed['add']:,} tagged)")
        report("baseline INSERT … SELECT by hand", times["baseline"], f"({changed['baseline']:,} rows)")
        report("baseline + ON CONFLICT DO NOTHING", times["baseline_oc"], f"({changed['baseline_oc']:,} rows)")
        report("bulk add again (no-op)", times["again"], f"({changed['again']:,} tagged)")
        report("bulk remove (one DELETE … IN)", times["remove"], f"({changed['remove']:,} untagged)")
        ratio = statistics.median(times["add"]) / statistics.median(times["baseline"])
        print(f"bulk add / baseline (medians): {ratio:.2f}x", flush=True)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=120_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--tags-each", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(describe_machine(machine_info()))
    with fresh_postgres_database("kizuna_bench_tags") as name:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        asyncio.run(run(url, args.customers, args.members, args.tags_each, args.repeat))


if __name__ == "__main__":
    main()
