"""Churn model benchmark (issue 14 §3): the daily BG/NBD + Gamma-Gamma job at 100k customers /
~1M orders on PostgreSQL, beside the plain SQL metrics refresh of the same customers.

On a fresh database (created and dropped), seeded by COPY with customers drawn from the BG/NBD
story itself (first order within `--days`; while active, orders at λ ~ Gamma(r, α); after each
repeat order, gone for good with p ~ Beta(a, b); each customer's own order value; 5 % of orders doubled on the
same day, which the model counts as one purchase), then, in one run:

- baseline: `customer_metrics.refresh_all` (the SQL backfill of every customer's metrics and
  the deciles, what `kizuna metrics refresh` runs before the model);
- the job's steps (`campaigns/churn.py`): extract (one GROUP BY statement → numpy), fit on the
  50,000-customer sample, fit on all customers (what the sample saves), score everyone, write;
- the write three ways (`customer_metrics.write_churn_scores`): UPDATE … FROM (VALUES …) per
  5,000 rows, an executemany of a one-row UPDATE, and UPDATE … FROM unnest(four bound arrays),
  each over every customer in 10,000-row transactions, twice;
- `churn.refresh_model` end to end.

    .venv/bin/python bench/churn_model.py
    .venv/bin/python bench/churn_model.py --customers 100000

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust).
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
from kizuna.campaigns import churn  # noqa: E402
from kizuna.storage import customer_metrics  # noqa: E402
from kizuna.storage.db import chunked, create_engine, session_factory, transaction  # noqa: E402
from kizuna.storage.migrate import upgrade  # noqa: E402

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=timezone.utc)
TRUE = {"r": 0.9, "alpha": 25.0, "a": 1.2, "b": 9.0}  # days; ~1 order a month while active, ~10 before leaving


def simulate(customers: int, days: int, rng: random.Random):
    """(customer_id, ordered_at, total) rows from the BG/NBD story."""
    for customer in range(1, customers + 1):
        at = first = NOW - timedelta(days=rng.uniform(0, days))
        rate = rng.gammavariate(TRUE["r"], 1 / TRUE["alpha"])
        dropout = rng.betavariate(TRUE["a"], TRUE["b"])
        usual = rng.gammavariate(3, 1500) + 1000
        while at <= NOW:
            total = round(rng.gammavariate(6, usual / 6)) + 1
            yield customer, at, total
            if rng.random() < 0.05:  # a second order the same day
                yield customer, at + timedelta(minutes=5), total // 2 + 1
            # BG/NBD: a customer may drop out after a repeat purchase, not after the first
            if at > first and rng.random() < dropout:
                break
            gap = rng.expovariate(rate)
            if gap > 2 * days:  # a very slow buyer: nothing more within the data
                break
            at += timedelta(days=gap)


async def seed(dsn: str, customers: int, days: int, rng: random.Random) -> int:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "customers", columns=["id", "followed", "blocked", "registered", "marketing_opt_in", "created_at"],
            records=((i, True, False, False, False, NOW) for i in range(1, customers + 1)),
        )
        await connection.execute(f"SELECT setval('customers_id_seq', {customers})")
        rows = [(f"S-{n}", customer, at, total, "completed", "x", NOW, NOW)
                for n, (customer, at, total) in enumerate(simulate(customers, days, rng))]
        await connection.copy_records_to_table(
            "orders", columns=["external_id", "customer_id", "ordered_at", "total", "status", "fingerprint", "created_at", "updated_at"],
            records=rows,
        )
        await connection.execute("ANALYZE")
        return len(rows)
    finally:
        await connection.close()


def line(label: str, seconds: float, note: str = "") -> None:
    print(f"{label:<58} {seconds * 1000:10.0f} ms  {note}", flush=True)


async def run(url: str, customers: int, days: int, rng: random.Random) -> None:
    started = time.perf_counter()
    order_count = await seed(url.replace("postgresql+asyncpg://", "postgresql://"), customers, days, rng)
    print(f"seeded {customers:,} customers, {order_count:,} orders in {time.perf_counter() - started:.1f} s", flush=True)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        step = time.perf_counter()
        async with transaction(sessions) as session:
            await customer_metrics.refresh_all(session, now=NOW)
        baseline = time.perf_counter() - step
        line("baseline: SQL metrics refresh_all (+ deciles)", baseline)

        step = time.perf_counter()
        async with sessions() as session:
            summaries = await churn.purchase_summaries(session, now=NOW)
        line("extract: purchase summaries (GROUP BY → numpy)", time.perf_counter() - step,
             f"{len(summaries):,} customers, {int((summaries.x > 0).sum()):,} repeat")

        step = time.perf_counter()
        fitted = churn.fit(summaries)
        line(f"fit on a sample of {fitted.fit_sample:,}", time.perf_counter() - step,
             "r={r:.3f} alpha={alpha:.2f} a={a:.3f} b={b:.3f}".format(**vars(fitted.purchases)))
        step = time.perf_counter()
        everyone = churn.fit(summaries, sample=len(summaries))
        line(f"fit on all {len(summaries):,} (for comparison)", time.perf_counter() - step,
             "r={r:.3f} alpha={alpha:.2f} a={a:.3f} b={b:.3f}".format(**vars(everyone.purchases)))
        print(f"{'':<58} true: r={TRUE['r']} alpha={TRUE['alpha']} a={TRUE['a']} b={TRUE['b']}")

        step = time.perf_counter()
        rules = customer_metrics.DEFAULT_RULES
        rows = churn.score_rows(summaries, churn.score(fitted, summaries, rules))
        line("score everyone (numpy) + rows", time.perf_counter() - step)

        for method in ("executemany", "values", "unnest", "executemany", "values", "unnest"):
            step = time.perf_counter()
            for chunk in chunked(rows, churn.WRITE_CHUNK):
                async with transaction(sessions) as session:
                    await customer_metrics.write_churn_scores(session, list(chunk), method=method)
            line(f"write {len(rows):,} rows: {method}", time.perf_counter() - step)

        step = time.perf_counter()
        status = await churn.refresh_model(sessions, now=NOW)
        total = time.perf_counter() - step
        line("churn.refresh_model end to end", total, f"steps {status.seconds}")
        print(f"job / baseline: {total / baseline:.2f}×; extrapolated linearly to 1M customers "
              f"(the fit stays on 50,000): ~{(total - status.seconds.get('fit', 0)) * 1_000_000 / customers + status.seconds.get('fit', 0):.0f} s")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=1095, help="first orders spread over this many days")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    print(describe_machine(machine_info()))
    with fresh_postgres_database("kizuna_churn_bench") as name:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        asyncio.run(run(url, args.customers, args.days, random.Random(args.seed)))


if __name__ == "__main__":
    main()
