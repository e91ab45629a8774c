"""Coupons under concurrency: many issues of one limited-stock, one-per-customer coupon at
once, in one process and across two OS processes, and one code redeemed by many tills.

On PostgreSQL (KIZUNA_TEST_DATABASE_URL) the full size runs: 400 concurrent issues over
100 customers, from a pool of 20+ connections; on SQLite a smaller version.

This file is also the worker script of the two-process test:
    python tests/storage/test_coupons_concurrency.py DATABASE_URL COUPON_ID CUSTOMER_ID,... REPEATS
prints "ready", waits for a line on stdin, issues, and prints a JSON summary.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

if __name__ == "__main__":  # the worker: make `kizuna` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import sqlalchemy as sa

from kizuna.storage import coupons
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Coupon, CouponGrant, Customer, Interaction

POSTGRES = bool(os.environ.get("KIZUNA_TEST_DATABASE_URL"))
# (customers, calls per customer, stock, pool size)
SIZE = (100, 4, 50, 20) if POSTGRES else (30, 3, 10, 5)
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)


async def _setup(database_url: str, customers: int, stock: int) -> tuple[int, list[int]]:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            rows = [Customer(line_user_id=f"U{i:032x}") for i in range(customers)]
            session.add_all(rows)
            coupon = await coupons.create_coupon(
                session, {"title": "先着50名様 500円OFF", "discount_type": "amount", "discount_value": 500, "valid_days": 14, "stock": stock}
            )
            await session.flush()
            return coupon.id, [row.id for row in rows]
    finally:
        await engine.dispose()


async def _issue_all(database_url: str, coupon_id: int, calls: list[int], pool_size: int, ready=None) -> dict:
    """Each call in its own session and transaction, all at once (after `ready()`, if given)."""
    engine = create_engine(database_url, pool_size=pool_size)
    sessions = session_factory(engine)
    peak = 0
    outcomes: collections.Counter = collections.Counter()
    by_customer: dict[int, set[int]] = collections.defaultdict(set)

    async def one(customer_id: int) -> None:
        nonlocal peak
        async with transaction(sessions) as session:
            result = await coupons.issue(session, coupon_id=coupon_id, customer_id=customer_id, now=NOW)
            peak = max(peak, engine.sync_engine.pool.checkedout())
        outcomes["created" if result.created else "existing" if result.grant else result.refusal] += 1
        if result.grant is not None:
            by_customer[customer_id].add(result.grant.id)

    try:
        # Warm the pool so that the burst is not spent opening connections one by one.
        await asyncio.gather(*(_touch(sessions) for _ in range(pool_size)))
        if ready is not None:
            await ready()
        started = time.time()
        await asyncio.gather(*(one(customer_id) for customer_id in calls))
        finished = time.time()
    finally:
        await engine.dispose()
    return {"outcomes": dict(outcomes), "peak_connections": peak, "started": started, "finished": finished,
            "grant_ids_seen": {str(k): sorted(v) for k, v in by_customer.items()}}


async def _touch(sessions) -> None:
    async with sessions() as session:
        await session.execute(sa.text("SELECT 1"))
        await asyncio.sleep(0.01)


def _calls(customer_ids: list[int], repeats: int, seed: int) -> list[int]:
    """Every customer `repeats` times, shuffled, but with each customer's calls close
    together so that same-customer calls really race each other."""
    rng = random.Random(seed)
    calls = [c for c in customer_ids for _ in range(repeats)]
    chunks = [calls[i:i + 12] for i in range(0, len(calls), 12)]
    rng.shuffle(chunks)
    for chunk in chunks:
        rng.shuffle(chunk)
    return [c for chunk in chunks for c in chunk]


async def _check_invariants(database_url: str, coupon_id: int, stock: int) -> tuple[int, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            issued = (await connection.execute(sa.select(Coupon.issued_count).where(Coupon.id == coupon_id))).scalar_one()
            grants = (await connection.execute(
                sa.select(sa.func.count()).select_from(CouponGrant).where(CouponGrant.coupon_id == coupon_id))).scalar_one()
            doubles = (await connection.execute(
                sa.select(CouponGrant.customer_id).where(CouponGrant.coupon_id == coupon_id)
                .group_by(CouponGrant.customer_id).having(sa.func.count() > 1))).all()
            timeline = (await connection.execute(
                sa.select(sa.func.count()).select_from(Interaction).where(Interaction.kind == "coupon.issued"))).scalar_one()
    finally:
        await engine.dispose()
    assert doubles == [], f"customers with two grants: {doubles}"
    assert issued == grants == timeline, (issued, grants, timeline)
    assert 0 <= stock - issued
    return issued, grants


async def test_hundreds_of_concurrent_issues_never_oversell_or_double_grant(database_url):
    customers, repeats, stock, pool = SIZE
    coupon_id, customer_ids = await _setup(database_url, customers, stock)
    calls = _calls(customer_ids, repeats, seed=1)
    summary = await _issue_all(database_url, coupon_id, calls, pool)

    issued, grants = await _check_invariants(database_url, coupon_id, stock)
    assert issued == grants == stock  # more customers than stock: all of it goes
    outcomes = summary["outcomes"]
    assert outcomes["created"] == stock
    assert sum(outcomes.values()) == len(calls) == customers * repeats
    assert set(outcomes) <= {"created", "existing", "out_of_stock"}
    # Every call that got a grant for a customer got the same one.
    assert all(len(ids) == 1 for ids in summary["grant_ids_seen"].values())
    if POSTGRES:
        assert len(calls) >= 300 and summary["peak_connections"] >= 20, summary["peak_connections"]


async def test_two_processes_issuing_at_once_never_oversell_or_double_grant(database_url):
    customers, repeats, stock, _pool = SIZE
    repeats = 2 if POSTGRES else 1
    coupon_id, customer_ids = await _setup(database_url, customers, stock)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, database_url, str(coupon_id), ",".join(map(str, customer_ids)), str(repeats), str(seed),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        for seed in (1, 2)
    ]
    try:
        for worker in workers:  # both have imported and connected: start them together
            line = await asyncio.wait_for(worker.stdout.readline(), 30)
            assert line.strip() == b"ready", line + await worker.stderr.read()
        for worker in workers:
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        results = []
        for worker in workers:
            out, err = await asyncio.wait_for(worker.communicate(), 60)
            assert worker.returncode == 0, err.decode()
            results.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()

    issued, grants = await _check_invariants(database_url, coupon_id, stock)
    assert issued == grants == stock
    created = sum(r["outcomes"].get("created", 0) for r in results)
    assert created == stock
    # The two bursts overlapped in time (the race was real) ...
    assert max(r["started"] for r in results) < min(r["finished"] for r in results), results
    # ... and every call for a customer, in either process, saw the same grant.
    seen: dict[str, set[int]] = collections.defaultdict(set)
    for result in results:
        for customer, ids in result["grant_ids_seen"].items():
            seen[customer].update(ids)
    assert all(len(ids) == 1 for ids in seen.values())


async def test_one_code_redeemed_by_twenty_tills_at_once_succeeds_once(database_url):
    coupon_id, [customer_id] = await _setup(database_url, 1, 10)
    engine = create_engine(database_url, pool_size=20)
    sessions = session_factory(engine)
    try:
        async with transaction(sessions) as session:
            code = (await coupons.issue(session, coupon_id=coupon_id, customer_id=customer_id, now=NOW)).grant.code

        async def till(number: int) -> str:
            try:
                async with transaction(sessions) as session:
                    await coupons.redeem(session, code_text=code, shop_code="KZN", by=f"till-{number}", where=f"till-{number}", now=NOW)
                return "redeemed"
            except coupons.RedeemError as error:
                return error.code

        outcomes = collections.Counter(await asyncio.gather(*(till(n) for n in range(20))))
        async with sessions() as session:
            redeemed = (await session.execute(
                sa.select(sa.func.count()).select_from(Interaction).where(Interaction.kind == "coupon.redeemed"))).scalar_one()
    finally:
        await engine.dispose()
    assert outcomes == {"redeemed": 1, "already_redeemed": 19}
    assert redeemed == 1


# -- the worker of the two-process test --------------------------------------------------------


async def _worker(database_url: str, coupon_id: int, customer_ids: list[int], repeats: int, seed: int) -> dict:
    pool = 10 if database_url.startswith("postgresql") else 5

    async def ready() -> None:  # connected: tell the test, wait for its "go"
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    return await _issue_all(database_url, coupon_id, _calls(customer_ids, repeats, seed), pool, ready)


if __name__ == "__main__":
    url, coupon, ids, reps, seed_text = sys.argv[1:6]
    summary = asyncio.run(_worker(url, int(coupon), [int(x) for x in ids.split(",")], int(reps), int(seed_text)))
    print(json.dumps(summary))
