"""Bulk order import benchmark (issue 14, Figures: bulk order import ≥ 0.5× asyncpg
`copy_records_to_table` of the same rows).

Generates a realistic orders CSV (deterministic seed): `--orders` orders (default 200,000, about
2.5 lines each), bought by `--customers` people (default 50,000) with a heavy head of frequent
buyers; each person has a shop customer id, an e-mail and a phone, and each order names them by
the references its channel knows (EC: e-mail, often the customer id; store/POS: phone or the
customer id, local time without offset), so orders of one person meet under different
references and some become merge candidates. A CP932 copy of the file is written too.

Then, on PostgreSQL, each in a fresh database (created, migrated, dropped):

- (a) the anchor: asyncpg `copy_records_to_table` of the rows the import writes (orders,
  order_items, interactions), prepared in memory beforehand, so only the COPY is timed (the
  customers the rows point at are COPYed first, untimed);
- (b) `kizuna import orders FILE.csv` end to end, as a subprocess (parsing, matching, new
  customers, identities, orders, lines, timeline, metrics, deciles);
- (c) the same command on the same file again: must change nothing (row counts compared);
- the CP932 copy imported (b) into another database: the encoding path costs the same;

and (b) on SQLite. `--profile` runs (b) once more in this process, timing each kind of SQL
statement and each COPY (where the database time goes; the rest is Python: parsing in the
read-ahead thread, matching and row building in the main one).

    .venv/bin/python bench/order_import.py
    .venv/bin/python bench/order_import.py --orders 20000 --customers 5000 --profile

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PG_BENCH_DSN, PYTHON, REPO, describe_machine, fresh_postgres_database, machine_info  # noqa: E402

HEADER = ("external_id", "ordered_at", "total", "external_customer_id", "email", "phone", "line_user_id",
          "channel", "store", "status", "sku", "name", "category", "quantity", "unit_price")
JST = timezone(timedelta(hours=9))
START = datetime(2024, 1, 1, tzinfo=JST)
NOW = datetime(2026, 12, 5, tzinfo=timezone.utc)
PRODUCTS = [  # (sku, name, category, unit price)
    (f"{prefix}-{n:03d}", f"{name} {n}", category, price)
    for prefix, name, category, price in (
        ("HC", "シャンプー", "ヘアケア", 3300), ("TR", "トリートメント", "ヘアケア", 3800),
        ("SK", "化粧水", "スキンケア", 4400), ("ML", "乳液", "スキンケア", 4950),
        ("BD", "ボディソープ", "ボディケア", 1980), ("FD", "ハーブティー", "食品", 1296),
        ("AP", "オーガニックTシャツ", "アパレル", 5940),
    ) for n in range(1, 41)
]
STORES = ["渋谷店", "梅田店", "博多店", "札幌店", "名古屋店"]


@dataclass
class Generated:
    path: Path
    cp932: Path
    rows: int
    orders: int


def generate(directory: Path, orders: int, people: int, seed: int) -> Generated:
    """Write the CSV (UTF-8 with BOM, as Excel saves it) and its CP932 copy; deterministic."""
    rng = random.Random(seed)
    weights = [1 / (i ** 0.8) for i in range(1, people + 1)]
    buyers = rng.choices(range(1, people + 1), weights=weights, k=orders)
    path, cp932 = directory / "orders.csv", directory / "orders_cp932.csv"
    rows = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file, lineterminator="\r\n")
        writer.writerow(HEADER)
        for number, person in enumerate(buyers, start=1):
            store = rng.random() < 0.3
            email = f"user{person}@example.jp" if person % 7 else f"User{person}@Example.JP"
            phone = f"090-{1200 + person // 10000:04d}-{person % 10000:04d}"
            customer_id = f"C{person:07d}"
            if store:
                refs = {"phone": phone} if rng.random() < 0.5 else {"external_customer_id": customer_id}
                moment = START + timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
                ordered_at = moment.strftime("%Y/%m/%d %H:%M")  # POS: local time, no offset
            else:
                refs = {"email": email}
                if rng.random() < 0.6:
                    refs["external_customer_id"] = customer_id
                if rng.random() < 0.05:
                    refs["phone"] = phone  # now and then both: the orders that link (or conflict)
                ordered_at = (START + timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))).isoformat()
            lines = rng.choices((1, 2, 3, 4, 5), weights=(30, 25, 20, 15, 10))[0]
            items = [(rng.choice(PRODUCTS), rng.choices((1, 2, 3), weights=(80, 15, 5))[0]) for _ in range(lines)]
            total = sum(price * quantity for (_, _, _, price), quantity in items)
            status = rng.choices(("completed", "cancelled", "returned"), weights=(95, 3, 2))[0]
            order = {"external_id": f"{'POS' if store else 'EC'}-{number:08d}", "ordered_at": ordered_at,
                     "total": f"{total:,}" if store else str(total), "channel": "store" if store else "ec",
                     "store": rng.choice(STORES) if store else "", "status": status, **refs}
            for (sku, name, category, price), quantity in items:
                writer.writerow([order.get(name_, "") for name_ in HEADER[:10]] + [sku, name, category, quantity, price])
                rows += 1
    cp932.write_bytes(path.read_text(encoding="utf-8-sig").encode("cp932"))
    return Generated(path, cp932, rows, orders)


# -- (a) the anchor: COPY of the same rows -----------------------------------------------------

def anchor_records(path: Path) -> tuple[int, list[tuple], list[tuple], list[tuple], list[tuple]]:
    """The rows the import writes, built in memory from the file (customers by shop person, as
    the matching would find them): customers, orders, order_items, interactions."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        rows = list(csv.DictReader(file))
    person_of: dict[str, int] = {}
    orders, items, timeline = [], [], []
    order_id = 0
    current = None
    for row in rows:
        if row["external_id"] != current:
            current = row["external_id"]
            order_id += 1
            key = row["external_customer_id"] or row["email"].lower() or row["phone"]
            customer = person_of.setdefault(key, len(person_of) + 1)
            text = row["ordered_at"].replace("/", "-")
            moment = datetime.fromisoformat(text)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=JST)
            total = int(row["total"].replace(",", ""))
            fingerprint = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()
            orders.append((order_id, row["external_id"], customer, moment, total, row["channel"], row["store"] or None,
                           row["status"], fingerprint, NOW, NOW))
            line_no = 0
            timeline.append((customer, "sys", f"order.{'placed' if row['status'] == 'completed' else row['status']}", None,
                             json.dumps({"order_id": order_id, "external_id": row["external_id"], "ordered_at": moment.isoformat(),
                                         "total": total, "status": row["status"], "channel": row["channel"],
                                         "store": row["store"] or None, "items": 0}, ensure_ascii=False),
                             "system", "import:orders.csv", NOW))
        line_no += 1
        items.append((order_id, line_no, row["sku"], row["name"], row["category"], int(row["quantity"]), int(row["unit_price"])))
    customers = [(n, False, False, False, False, NOW) for n in range(1, len(person_of) + 1)]
    return len(person_of), customers, orders, items, timeline


async def anchor(dsn: str, records: tuple) -> tuple[float, int]:
    import asyncpg

    count, customers, orders, items, timeline = records
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "customers", columns=["id", "followed", "blocked", "registered", "marketing_opt_in", "created_at"], records=customers)
        await connection.execute(f"SELECT setval('customers_id_seq', {count})")
        started = time.perf_counter()
        await connection.copy_records_to_table(
            "orders", columns=["id", "external_id", "customer_id", "ordered_at", "total", "channel", "store", "status",
                               "fingerprint", "created_at", "updated_at"], records=orders)
        await connection.copy_records_to_table(
            "order_items", columns=["order_id", "line_no", "sku", "name", "category", "quantity", "unit_price"], records=items)
        await connection.copy_records_to_table(
            "interactions", columns=["customer_id", "direction", "kind", "text", "payload", "sender_type", "sender_id",
                                     "created_at"], records=timeline)
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return elapsed, len(orders) + len(items) + len(timeline)


# -- (b), (c): the command ---------------------------------------------------------------------

def kizuna_env(url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("REDIS_URL", "LINE_CHANNEL_SECRET", "LINE_CHANNEL_ACCESS_TOKEN")}
    env.update(DATABASE_URL=url, KIZUNA_DATABASE_URL=url, KIZUNA_SECRET_KEY="bench-" + "k" * 40, KIZUNA_LOG_LEVEL="WARNING")
    return env


def kizuna(url: str, *args: str, cwd: Path) -> tuple[float, str]:
    command = [PYTHON, "-m", "kizuna.bot.cli"]
    started = time.perf_counter()
    result = subprocess.run([*command, *args], env=kizuna_env(url), cwd=cwd, capture_output=True, text=True, timeout=3600,
                            stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"kizuna {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout.strip()


TABLES = ("customers", "customer_identities", "orders", "order_items", "interactions", "merge_candidates", "customer_metrics")


def pg_counts(dsn: str) -> dict[str, int]:
    import asyncpg

    async def go() -> dict[str, int]:
        connection = await asyncpg.connect(dsn)
        try:
            return {table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}
        finally:
            await connection.close()

    return asyncio.run(go())


def sqlite_counts(path: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(path) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def pg_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def statement_profile(url: str, path: Path) -> None:
    """`run_import` in this process, with the time of each kind of statement (SQLAlchemy's cursor
    events) and of each COPY (storage.db.copy_records), summed."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import event

    from kizuna.storage import db, identities, imports
    from kizuna.storage import orders as order_store
    from kizuna.storage.db import create_engine, session_factory
    from kizuna.storage.types import utcnow

    spent: dict[str, float] = {}
    calls: dict[str, int] = {}

    def note(key: str, seconds: float) -> None:
        spent[key] = spent.get(key, 0.0) + seconds
        calls[key] = calls.get(key, 0) + 1

    async def go() -> float:
        engine = create_engine(url)

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info["started"] = time.perf_counter()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):
            note(" ".join(statement.split())[:70], time.perf_counter() - conn.info["started"])

        copy = db.copy_records

        async def timed_copy(session, table, columns, records):
            started = time.perf_counter()
            await copy(session, table, columns, records)
            note(f"COPY {table}", time.perf_counter() - started)

        db.copy_records = order_store.copy_records = identities.copy_records = timed_copy
        started = time.perf_counter()
        try:
            await imports.run_import(imports.ORDERS, path, session_factory(engine), zone=ZoneInfo("Asia/Tokyo"), now=utcnow,
                                     dry_run=False)
        finally:
            db.copy_records = order_store.copy_records = identities.copy_records = copy
            await engine.dispose()
        return time.perf_counter() - started

    total = asyncio.run(go())
    in_database = sum(spent.values())
    print(f"\n  where the time goes (one in-process import, {total:.1f} s): statements and COPYs {in_database:.1f} s, "
          f"the rest (Python between them) {total - in_database:.1f} s")
    for key, seconds in sorted(spent.items(), key=lambda item: item[1], reverse=True)[:16]:
        print(f"    {seconds:6.2f} s {calls[key]:5d}x  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--profile", action="store_true", help="also time (b)'s statements in this process")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and of (b), alternating")
    args = parser.parse_args()
    print(describe_machine(machine_info()), flush=True)
    with tempfile.TemporaryDirectory(prefix="kizuna_bench_import_") as temp:
        work = Path(temp)
        started = time.perf_counter()
        data = generate(work, args.orders, args.customers, args.seed)
        print(f"generated {data.orders:,} orders in {data.rows:,} rows ({data.path.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
        figures: list[tuple[str, float, str]] = []
        records = anchor_records(data.path)  # built once, outside the timing
        anchors, imports_ = [], []
        # (a) and (b) alternate, `--repeat` times each: on a shared machine the load changes by the
        # minute, so each is reported as its best and its median, side by side.
        for attempt in range(args.repeat):
            with fresh_postgres_database("kizuna_bench_copy") as name:
                kizuna(pg_url(name), "migrate", cwd=work)
                anchors.append(asyncio.run(anchor(PG_BENCH_DSN.format(name=name), records))[0])
            with fresh_postgres_database("kizuna_bench_import") as name:
                url = pg_url(name)
                kizuna(url, "migrate", cwd=work)
                elapsed, out = kizuna(url, "import", "orders", str(data.path), cwd=work)
                imports_.append(elapsed)
                print(f"  run {attempt + 1}: (a) {anchors[-1]:.1f} s, (b) {elapsed:.1f} s", flush=True)
                if attempt == args.repeat - 1:
                    first = pg_counts(PG_BENCH_DSN.format(name=name))
                    rerun, again_out = kizuna(url, "import", "orders", str(data.path), cwd=work)
                    again = pg_counts(PG_BENCH_DSN.format(name=name))
                    same = "nothing changed" if again == first else f"CHANGED: {first} -> {again}"
                    print("  stored:", ", ".join(f"{table} {count:,}" for table, count in first.items()))
        written = len(records[2]) + len(records[3]) + len(records[4])
        figures.append(("(a) asyncpg copy_records_to_table, best", min(anchors), f"{written:,} rows written"))
        figures.append(("(a) asyncpg copy_records_to_table, median", statistics.median(anchors), ""))
        figures.append(("(b) kizuna import orders (PostgreSQL), best", min(imports_), out.splitlines()[-1]))
        figures.append(("(b) kizuna import orders (PostgreSQL), median", statistics.median(imports_), ""))
        figures.append(("(c) the same file again (PostgreSQL)", rerun, f"{same}; {again_out.splitlines()[-1]}"))

        with fresh_postgres_database("kizuna_bench_import_sjis") as name:
            url = pg_url(name)
            kizuna(url, "migrate", cwd=work)
            elapsed, out = kizuna(url, "import", "orders", str(data.cp932), cwd=work)
            figures.append(("(b) the CP932 copy (PostgreSQL)", elapsed, out.splitlines()[-1]))

        if args.profile:
            with fresh_postgres_database("kizuna_bench_import_prof") as name:
                kizuna(pg_url(name), "migrate", cwd=work)
                statement_profile(pg_url(name), data.path)

        if not args.no_sqlite:
            url = f"sqlite+aiosqlite:///{work / 'kizuna.db'}"
            kizuna(url, "migrate", cwd=work)
            elapsed, out = kizuna(url, "import", "orders", str(data.path), cwd=work)
            figures.append(("(b) kizuna import orders (SQLite)", elapsed, out.splitlines()[-1]))
            first = sqlite_counts(work / "kizuna.db")
            elapsed, out = kizuna(url, "import", "orders", str(data.path), cwd=work)
            same = "nothing changed" if sqlite_counts(work / "kizuna.db") == first else "CHANGED"
            figures.append(("(c) the same file again (SQLite)", elapsed, same))

        best, median = min(anchors), statistics.median(anchors)
        print(f"\n{'what':<52} {'time':>8} {'rows/s':>9} {'vs (a)':>7}")
        for label, elapsed, note in figures:
            base = median if "median" in label else best
            print(f"{label:<52} {elapsed:7.1f}s {data.rows / elapsed:9,.0f} {base / elapsed:6.2f}x  {note}")
        print(f"(rows/s: the file's {data.rows:,} order-line rows over the time; 'vs (a)': (a)'s time / this time "
              f"(best against best, median against median), goal ≥ 0.5)")


if __name__ == "__main__":
    main()
