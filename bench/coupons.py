"""Coupon issuing benchmark (issue 3): issues per second under contention.

Many customers, one coupon, N concurrent asyncio tasks in this process, each issue in its
own session and transaction (`kizuna.storage.coupons.issue`, exactly as the API and the
bot call it). Scenarios, all in the same run and on the same database:

- "limited stock, sells out": one-per-customer coupon with `--stock`, `--attempts` issues
  over `--customers` customers chosen at random (so with repeats). Every grant serialises
  on the coupon row (the guarded `UPDATE ... issued_count + 1`); after the stock is gone
  the remaining calls are refusals.
- "limited stock, never sells out": the same guard, a stock larger than the attempts.
- "unlimited, repeatable": `stock = NULL`, not one-per-customer: the same code path and
  the same hot-row UPDATE, nothing ever refused or deduplicated.
- "baseline: plain INSERT": the grant and its timeline row inserted in one transaction
  with no stock guard and no UPDATE of the coupon row: the floor, what the guard costs.

After each scenario the invariants are checked in the database: issued_count equals the
number of grants and never exceeds the stock, no customer holds two grants of a
one-per-customer coupon, one `coupon.issued` timeline row per grant.

    .venv/bin/python bench/coupons.py                 # PostgreSQL, then SQLite
    .venv/bin/python bench/coupons.py --concurrency 64 --attempts 20000 --repeat 3
    .venv/bin/python bench/coupons.py --no-sqlite --json out.json

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust, database `test`): a fresh
database is created and dropped. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from kizuna.storage import coupons  # noqa: E402
from kizuna.storage.coupon_codes import generate_code  # noqa: E402
from kizuna.storage.db import create_engine, session_factory, transaction  # noqa: E402
from kizuna.storage.migrate import upgrade  # noqa: E402
from kizuna.storage.models import Coupon, CouponGrant, Customer, Interaction  # noqa: E402
from kizuna.storage.types import utcnow  # noqa: E402


async def make_customers(sessions, count: int) -> list[int]:
    ids: list[int] = []
    for start in range(0, count, 1000):
        async with transaction(sessions) as session:
            rows = [Customer(line_user_id="U" + uuid.uuid4().hex) for _ in range(start, min(count, start + 1000))]
            session.add_all(rows)
            await session.flush()
            ids += [row.id for row in rows]
    return ids


async def make_coupon(sessions, *, stock: int | None, one_per_customer: bool, title: str) -> int:
    async with transaction(sessions) as session:
        coupon = await coupons.create_coupon(session, {
            "title": title, "discount_type": "amount", "discount_value": 500, "valid_days": 30,
            "stock": stock, "one_per_customer": one_per_customer,
        })
        return coupon.id


async def plain_insert(session, coupon_id: int, customer_id: int, now) -> None:
    """The floor: a grant and its timeline row, no guard, no coupon row UPDATE."""
    code = generate_code("KZN")
    grant_id = (await session.execute(sa.insert(CouponGrant).values(
        coupon_id=coupon_id, customer_id=customer_id, code=code, per_customer_key=str(uuid.uuid4()),
        status="issued", issued_at=now, expires_at=now + timedelta(days=30),
    ).returning(CouponGrant.id))).scalar_one()
    await session.execute(sa.insert(Interaction).values(
        customer_id=customer_id, direction="sys", kind="coupon.issued", text="baseline", sender_type="system",
        payload={"coupon_id": coupon_id, "grant_id": grant_id, "code": code}, created_at=now,
    ))


async def run_scenario(sessions, *, coupon_id: int, calls: list[int], concurrency: int, plain: bool = False) -> dict:
    queue = collections.deque(calls)
    latencies: list[float] = []
    outcomes: collections.Counter = collections.Counter()
    last_grant_at = 0.0
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal last_grant_at
        while queue:
            customer_id = queue.popleft()
            t0 = time.perf_counter()
            async with transaction(sessions) as session:
                if plain:
                    await plain_insert(session, coupon_id, customer_id, utcnow())
                    outcome = "created"
                else:
                    result = await coupons.issue(session, coupon_id=coupon_id, customer_id=customer_id, now=utcnow())
                    outcome = "created" if result.created else "existing" if result.grant else result.refusal
            t1 = time.perf_counter()
            latencies.append((t1 - t0) * 1000)
            outcomes[outcome] += 1
            if outcome == "created":
                last_grant_at = t1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    grants = outcomes["created"]
    grant_window = (last_grant_at - start) if grants else 0.0
    return {
        "attempts": len(calls), "wall_s": wall, "attempts_per_s": len(calls) / wall,
        "grants": grants, "grants_per_s": grants / grant_window if grant_window else 0.0,
        "p50_ms": common.percentile(latencies, 50), "p99_ms": common.percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None, "outcomes": dict(outcomes),
    }


async def check_invariants(sessions, coupon_id: int, *, stock: int | None, one_per_customer: bool, plain: bool) -> dict:
    async with sessions() as session:
        issued = (await session.execute(sa.select(Coupon.issued_count).where(Coupon.id == coupon_id))).scalar_one()
        grants = (await session.execute(sa.select(sa.func.count()).select_from(CouponGrant)
                                        .where(CouponGrant.coupon_id == coupon_id))).scalar_one()
        doubles = (await session.execute(sa.select(sa.func.count()).select_from(
            sa.select(CouponGrant.customer_id).where(CouponGrant.coupon_id == coupon_id)
            .group_by(CouponGrant.customer_id).having(sa.func.count() > 1).subquery()))).scalar_one()
        timeline = (await session.execute(sa.select(sa.func.count()).select_from(Interaction).where(
            Interaction.kind == "coupon.issued", Interaction.payload["coupon_id"].as_integer() == coupon_id))).scalar_one()
    ok = timeline == grants
    if not plain:
        ok = ok and issued == grants and (stock is None or 0 <= stock - issued)
        if one_per_customer:
            ok = ok and doubles == 0
    return {"ok": ok, "issued_count": issued, "grants": grants, "customers_with_2": doubles, "timeline_rows": timeline}


SCENARIOS = (
    # label, stock (None: unlimited; "sell": --stock; "never": more than the attempts), one per customer, plain
    ("limited stock, sells out", "sell", True, False),
    ("limited stock, never sells out", "never", True, False),
    ("unlimited, repeatable", None, False, False),
    ("baseline: plain INSERT, no guard", None, False, True),
)


async def bench_backend(url: str, label: str, args: argparse.Namespace, pool: int) -> list[dict]:
    engine = create_engine(url, pool_size=pool) if url.startswith("postgresql") else create_engine(url)
    sessions = session_factory(engine)
    rng = random.Random(args.seed)
    rows = []
    try:
        customer_ids = await make_customers(sessions, args.customers)
        for repeat in range(args.repeat):
            for name, stock_kind, once, plain in SCENARIOS:
                stock = args.stock if stock_kind == "sell" else args.attempts + 1 if stock_kind == "never" else None
                coupon_id = await make_coupon(sessions, stock=stock, one_per_customer=once, title=name[:40])
                calls = [rng.choice(customer_ids) for _ in range(args.attempts)]
                meter = common.CpuMeter({"postgres": "comm:postgres"})
                meter.start()
                result = await run_scenario(sessions, coupon_id=coupon_id, calls=calls, concurrency=args.concurrency, plain=plain)
                cpu = meter.stop()
                check = await check_invariants(sessions, coupon_id, stock=stock, one_per_customer=once, plain=plain)
                row = {"backend": label, "scenario": name, "repeat": repeat, "stock": stock, **result, "check": check,
                       "client_cpu_s": round(cpu["self_s"], 2), "postgres_cpu_s": round(cpu.get("postgres_s", 0.0), 2),
                       "machine_busy_cores": round(cpu["machine_busy_s"] / cpu["wall_s"], 2) if cpu["wall_s"] else None}
                rows.append(row)
                print(_line(row), flush=True)
                if not check["ok"]:
                    raise SystemExit(f"INVARIANT BROKEN in {label} / {name}: {check}")
    finally:
        await engine.dispose()
    return rows


def _line(row: dict) -> str:
    return (f"  {row['backend']:<10} {row['scenario']:<34} {row['attempts_per_s']:>8.0f} att/s  "
            f"{row['grants']:>6} grants {row['grants_per_s']:>8.0f}/s  p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  "
            f"check {'ok' if row['check']['ok'] else 'BROKEN'}")


def table(rows: list[dict]) -> str:
    """Median over repeats, one line per backend and scenario (Markdown)."""
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for row in rows:
        groups[(row["backend"], row["scenario"])].append(row)
    lines = [
        "| backend | scenario | attempts | attempts/s | grants | grants/s (until last grant) | p50 ms | p99 ms | client CPU s | postgres CPU s | invariants |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (backend, scenario), items in groups.items():
        def med(key: str) -> float:
            return statistics.median(item[key] for item in items)

        lines.append(
            f"| {backend} | {scenario} | {items[0]['attempts']} | {med('attempts_per_s'):.0f} | {int(med('grants'))} | "
            f"{med('grants_per_s'):.0f} | {med('p50_ms'):.1f} | {med('p99_ms'):.1f} | {med('client_cpu_s'):.1f} | "
            f"{med('postgres_cpu_s'):.1f} | {'ok' if all(i['check']['ok'] for i in items) else 'BROKEN'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--attempts", type=int, default=6000, help="issue calls per scenario")
    parser.add_argument("--stock", type=int, default=2000, help="stock of the coupon that sells out")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent tasks")
    parser.add_argument("--pool", type=int, default=20, help="PostgreSQL pool size (plus as much overflow)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--json", type=Path, help="write every row and the machine here")
    args = parser.parse_args()

    machine = common.machine_info()
    print(f"machine: {common.describe_machine(machine)}")
    print(f"customers {args.customers}, attempts {args.attempts}/scenario, stock {args.stock}, "
          f"concurrency {args.concurrency}, pool {args.pool}, repeat {args.repeat}")
    rows: list[dict] = []
    if not args.no_postgres:
        common.wait_for_quiet(max_wait=20)
        with common.fresh_postgres_database("kizuna_bench_coupons") as name:
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            upgrade(url)
            rows += asyncio.run(bench_backend(url, "PostgreSQL", args, args.pool))
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite+aiosqlite:///{directory}/bench.db"
            upgrade(url)
            rows += asyncio.run(bench_backend(url, "SQLite", args, args.pool))
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2, default=str))
    return 0 if all(row["check"]["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
