"""A realistic shop's data set for the segment figures (issue 14, "Figures"): customers, orders with
their lines, tags and coupon redemptions, deterministic with a seed.

Shape (what makes segments and analytics behave as in a real shop, not a uniform toy):
- ~15 % of customers never bought (LINE friends only), ~45 % bought once, the rest repeat with a
  negative-binomial count (a long tail of heavy buyers, capped at 2,000); ~10 orders per customer
  on average over everyone;
- sign-ups grow over 3 years (more recent customers), each buyer has an active window (short for
  most, years for the heavy ones), and order days follow a seasonal curve (お中元 in July, お歳暮
  and the year end in December, a spring sale in March);
- 30 SKUs in 8 categories (ヘアケア, スキンケア, …) with popularity skewed (a few best sellers),
  1–3 lines per order; ~95 % of orders completed, the rest cancelled or returned;
- ~70 % LINE friends (~15 % of them blocked), ~40 % of friends registered members (~60 % of them
  opted in to marketing), gender/prefecture/birthday for most, tags on ~25 %, a coupon grant on
  ~12 % (~45 % redeemed).

PostgreSQL: a database of its own (`--database`, dropped first if it exists), `kizuna migrate`d,
then filled with COPY (asyncpg `copy_records_to_table`) with the big tables' secondary indexes and
foreign keys dropped during the load and rebuilt after (one sort each, not 10 M index inserts);
then `customer_metrics.refresh_all` — the project's own backfill, timed — and ANALYZE.
SQLite: a file, migrated, filled by executemany in big transactions, the same backfill.

Memory is flat: customers are made in chunks of 20,000 and their orders, lines, tags and grants
are written before the next chunk is made.

    .venv/bin/python bench/shop_data.py --customers 1000000                      # PostgreSQL kizuna_scale
    .venv/bin/python bench/shop_data.py --customers 100000 --sqlite /tmp/kizuna_scale.db
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kizuna.storage.prefectures import PREFECTURES  # noqa: E402

# The data set's "today": benches evaluate segments at this moment, so figures do not drift.
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)
YEARS = 3
SPAN_DAYS = 365 * YEARS
START = NOW - timedelta(days=SPAN_DAYS)
CHUNK = 20_000
FUTURE_DAYS = 3000  # a buyer's active window may run past today; the orders after today are not made
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# (sku, name, category, price in yen, popularity weight)
PRODUCTS: tuple[tuple[str, str, str, int, float], ...] = (
    ("HC-001", "ボタニカルシャンプー 400ml", "ヘアケア", 1980, 10),
    ("HC-002", "ボタニカルトリートメント 400ml", "ヘアケア", 1980, 8),
    ("HC-003", "スカルプエッセンス", "ヘアケア", 3300, 3),
    ("HC-004", "ヘアオイル 椿", "ヘアケア", 2420, 4),
    ("SK-001", "薬用化粧水 しっとり", "スキンケア", 2750, 9),
    ("SK-002", "美容乳液", "スキンケア", 3080, 6),
    ("SK-003", "ビタミンC美容液", "スキンケア", 4950, 4),
    ("SK-004", "オールインワンジェル", "スキンケア", 3520, 7),
    ("SK-005", "日焼け止めミルク SPF50+", "スキンケア", 1650, 5),
    ("MU-001", "クッションファンデーション", "メイクアップ", 3850, 3),
    ("MU-002", "リップティント", "メイクアップ", 1540, 4),
    ("MU-003", "アイブロウペンシル", "メイクアップ", 1100, 3),
    ("MU-004", "マスカラ ロング", "メイクアップ", 1320, 2),
    ("BC-001", "ボディソープ 柚子", "ボディケア", 1210, 5),
    ("BC-002", "ボディミルク", "ボディケア", 1870, 3),
    ("BC-003", "ハンドクリーム 桜", "ボディケア", 880, 6),
    ("BC-004", "入浴剤 ひのき 10包", "ボディケア", 990, 3),
    ("FR-001", "オードトワレ 金木犀", "フレグランス", 4400, 1),
    ("FR-002", "ルームフレグランス", "フレグランス", 3300, 1),
    ("SP-001", "コラーゲンドリンク 10本", "サプリメント", 3980, 3),
    ("SP-002", "青汁 30包", "サプリメント", 2980, 2),
    ("SP-003", "マルチビタミン 60粒", "サプリメント", 1680, 2),
    ("OC-001", "歯磨き粉 ホワイト", "オーラルケア", 770, 3),
    ("OC-002", "マウスウォッシュ", "オーラルケア", 660, 2),
    ("OC-003", "電動歯ブラシ替えブラシ", "オーラルケア", 1430, 1),
    ("GF-001", "ギフトセット 桜", "ギフト", 5500, 1),
    ("GF-002", "ギフトセット 雪", "ギフト", 5500, 1),
    ("GF-003", "トライアルキット", "ギフト", 1000, 4),
    ("GF-004", "ミニサイズセット", "ギフト", 2200, 2),
    ("GF-005", "ラッピング", "ギフト", 330, 2),
)
TAGS = ("VIP", "敏感肌", "乾燥肌", "メルマガ希望", "店舗スタッフ推薦", "サンプル請求", "定期便", "口コミ投稿")
STORES = ("渋谷店", "梅田店", "名古屋栄店", "博多店", "札幌店")
COUPONS = (("新規10%OFF", "percent", 10), ("500円OFF", "amount", 500), ("誕生月1000円OFF", "amount", 1000))

# Where customers live: the big cities weigh most.
_PREF_WEIGHTS = {"東京都": 14, "神奈川県": 8, "大阪府": 7, "愛知県": 6, "埼玉県": 6, "千葉県": 5, "兵庫県": 4,
                 "北海道": 4, "福岡県": 4, "静岡県": 3}


def _seasonal_cdf() -> np.ndarray:
    """CDF over the span's days of how likely an order falls on each day (seasonal bumps and slow growth)."""
    days = np.arange(SPAN_DAYS + FUTURE_DAYS + 1)  # beyond today too: windows of active customers run on
    moments = [START + timedelta(days=int(d)) for d in days]
    months = np.array([m.month for m in moments])
    days_of_month = np.array([m.day for m in moments])
    weight = 1.0 + 0.25 * np.minimum(days, SPAN_DAYS) / SPAN_DAYS  # the shop grows
    weight = weight * np.where(months == 12, 1.8, 1.0) * np.where(months == 7, 1.4, 1.0) * np.where(months == 3, 1.2, 1.0)
    weight = weight * np.where((months == 11) & (days_of_month >= 20), 1.6, 1.0)  # Black Friday / 年末 sale
    cdf = np.cumsum(weight)
    return cdf / cdf[-1]


@dataclass
class Chunk:
    customers: list[tuple]
    orders: list[tuple]
    items: list[tuple]
    tags: list[tuple]
    grants: list[tuple]


CUSTOMER_COLUMNS = ["id", "line_user_id", "display_name", "followed", "blocked", "followed_at", "unfollowed_at",
                    "last_interaction_at", "created_at", "registered", "registered_at", "privacy_consented_at",
                    "full_name", "birthday", "gender", "prefecture", "email", "marketing_opt_in"]
ORDER_COLUMNS = ["id", "external_id", "customer_id", "ordered_at", "total", "channel", "store", "status", "fingerprint",
                 "created_at", "updated_at"]
ITEM_COLUMNS = ["id", "order_id", "line_no", "sku", "name", "category", "quantity", "unit_price"]
TAG_COLUMNS = ["customer_id", "tag", "created_at"]
GRANT_COLUMNS = ["id", "coupon_id", "customer_id", "code", "per_customer_key", "status", "issued_at", "expires_at",
                 "redeemed_at"]


class ShopGenerator:
    """Chunks of a shop of `customers` customers, the same for the same seed (and chunk size)."""

    def __init__(self, customers: int, seed: int = 14) -> None:
        self.total_customers = customers
        self.seed = seed
        self.cdf = _seasonal_cdf()
        weights = np.array([p[4] for p in PRODUCTS], dtype=float)
        self.product_p = weights / weights.sum()
        names = list(_PREF_WEIGHTS) + [p.name for p in PREFECTURES if p.name not in _PREF_WEIGHTS]
        pref_w = np.array([_PREF_WEIGHTS.get(name, 0.8) for name in names])
        self.prefectures = names
        self.pref_p = pref_w / pref_w.sum()
        self.next_order_id = 1
        self.next_item_id = 1
        self.next_grant_id = 1

    def chunks(self):
        for first in range(0, self.total_customers, CHUNK):
            yield self._chunk(first, min(CHUNK, self.total_customers - first))

    def _moments(self, day_offsets: np.ndarray, seconds: np.ndarray) -> list[datetime]:
        stamps = START.timestamp() + day_offsets.astype(np.float64) * 86400.0 + seconds
        stamps = np.minimum(stamps, NOW.timestamp() - 60)
        return [EPOCH + timedelta(seconds=float(s)) for s in stamps]

    def _days_between(self, rng, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """A seasonal day in [low, high] for each pair (inverse CDF restricted to the window)."""
        q = self.cdf[low] + rng.random(len(low)) * (self.cdf[high] - self.cdf[low])
        return np.clip(np.searchsorted(self.cdf, q), low, high)

    def _chunk(self, first: int, size: int) -> Chunk:
        rng = np.random.default_rng([self.seed, first])
        ids = np.arange(first + 1, first + size + 1)
        # Sign-up day: growth, so more customers joined recently (density rising over the span).
        signup = (SPAN_DAYS * np.sqrt(rng.random(size))).astype(np.int64)
        kind = rng.random(size)
        counts = np.where(kind < 0.15, 0, np.where(kind < 0.60, 1,
                          2 + rng.negative_binomial(0.55, 0.55 / (0.55 + 110.0), size)))
        counts = np.minimum(counts, 2000)
        # Active window: from the sign-up; repeat buyers stay for a while (heavy buyers for years).
        life = rng.exponential(120.0, size) + counts * rng.uniform(4, 20, size)
        window_end = np.minimum(signup + np.where(counts > 1, life, 0).astype(np.int64), SPAN_DAYS + FUTURE_DAYS)

        # -- customers
        line = rng.random(size) < 0.70
        blocked = line & (rng.random(size) < 0.15)
        registered = line & (rng.random(size) < 0.40)
        opt_in = registered & (rng.random(size) < 0.60)
        has_birthday = rng.random(size) < np.where(registered, 0.9, 0.45)
        ages = rng.integers(18, 76, size)
        birth_doy = rng.integers(0, 365, size)
        gender_pick = rng.choice(4, size, p=[0.65, 0.25, 0.02, 0.08])
        has_gender = registered | (rng.random(size) < 0.5)
        pref_pick = rng.choice(len(self.prefectures), size, p=self.pref_p)
        has_pref = registered | (rng.random(size) < 0.6)
        signup_at = self._moments(signup, rng.uniform(0, 86400, size))
        interaction_day = np.minimum(signup + (rng.random(size) * (SPAN_DAYS - signup)).astype(np.int64), SPAN_DAYS)
        interaction_at = self._moments(interaction_day, rng.uniform(0, 86400, size))
        genders = ("female", "male", "other", "unanswered")
        customers = []
        today = NOW.date()
        for i in range(size):
            cid = int(ids[i])
            is_line, is_reg = bool(line[i]), bool(registered[i])
            birthday = None
            if has_birthday[i]:
                birthday = date(today.year - int(ages[i]), 1, 1) + timedelta(days=int(birth_doy[i]))
            customers.append((
                cid, f"U{cid:032x}" if is_line else None, f"お客様{cid}" if is_line else None,
                is_line and not blocked[i], bool(blocked[i]), signup_at[i] if is_line else None,
                interaction_at[i] if blocked[i] else None, interaction_at[i] if is_line else None,
                signup_at[i], is_reg, signup_at[i] if is_reg else None, signup_at[i] if is_reg else None,
                f"顧客 {cid}" if is_reg else None, birthday,
                genders[gender_pick[i]] if has_gender[i] else None,
                self.prefectures[pref_pick[i]] if has_pref[i] else None,
                f"c{cid}@example.jp" if is_reg or counts[i] > 0 else None, bool(opt_in[i]),
            ))

        # -- orders: one row per order, owners repeated by their counts; the part of a window that
        # lies after today is not made (the customer is still active), so recent days are not crowded
        owners = np.repeat(np.arange(size), counts)
        days = self._days_between(rng, signup[owners], window_end[owners])
        past = days <= SPAN_DAYS
        owners, days = owners[past], days[past]
        n_orders = len(owners)
        ordered_at = self._moments(days, rng.uniform(0, 86400, n_orders))
        status_pick = rng.random(n_orders)
        statuses = np.where(status_pick < 0.95, 0, np.where(status_pick < 0.98, 1, 2))
        channel = rng.random(n_orders) < 0.7  # EC, else a store
        store_pick = rng.integers(0, len(STORES), n_orders)
        lines_per_order = 1 + rng.binomial(2, 0.25, n_orders)
        n_items = int(lines_per_order.sum())
        item_order = np.repeat(np.arange(n_orders), lines_per_order)
        line_no = np.arange(n_items) - np.repeat(np.cumsum(lines_per_order) - lines_per_order, lines_per_order) + 1
        product = rng.choice(len(PRODUCTS), n_items, p=self.product_p)
        quantity = rng.choice([1, 2, 3], n_items, p=[0.85, 0.12, 0.03])
        prices = np.array([p[3] for p in PRODUCTS])[product]
        totals = np.bincount(item_order, weights=prices * quantity, minlength=n_orders).astype(np.int64)

        status_names = ("completed", "cancelled", "returned")
        order_base = self.next_order_id
        orders = []
        for k in range(n_orders):
            oid = order_base + k
            at = ordered_at[k]
            ec = bool(channel[k])
            orders.append((oid, f"S{oid:09d}", int(ids[owners[k]]), at, int(totals[k]), "ec" if ec else "store",
                           None if ec else STORES[store_pick[k]], status_names[statuses[k]], f"{oid:064x}", at, at))
        self.next_order_id += n_orders
        item_base = self.next_item_id
        items = []
        for j in range(n_items):
            sku, name, category, price, _w = PRODUCTS[product[j]]
            items.append((item_base + j, order_base + int(item_order[j]), int(line_no[j]), sku, name, category,
                          int(quantity[j]), price))
        self.next_item_id += n_items

        # -- tags (~25 % of customers, 1-2 distinct tags)
        tags = []
        tagged = np.nonzero(rng.random(size) < 0.25)[0]
        first_tag = rng.integers(0, len(TAGS), len(tagged))
        second = rng.random(len(tagged)) < 0.3
        offset = rng.integers(1, len(TAGS), len(tagged))
        for n, i in enumerate(tagged):
            cid = int(ids[i])
            tags.append((cid, TAGS[first_tag[n]], signup_at[i]))
            if second[n]:
                tags.append((cid, TAGS[(first_tag[n] + offset[n]) % len(TAGS)], signup_at[i]))

        # -- coupon grants (~12 %), ~45 % redeemed within their validity
        grants = []
        granted = np.nonzero(rng.random(size) < 0.12)[0]
        coupon = rng.integers(1, len(COUPONS) + 1, len(granted))
        redeemed = rng.random(len(granted)) < 0.45
        issued_day = np.minimum(signup[granted] + rng.integers(0, 60, len(granted)), SPAN_DAYS)
        issued_at = self._moments(issued_day, rng.uniform(0, 86400, len(granted)))
        for n, i in enumerate(granted):
            gid = self.next_grant_id + n
            issued = issued_at[n]
            grants.append((gid, int(coupon[n]), int(ids[i]), f"G{gid:011d}", "once",
                           "redeemed" if redeemed[n] else "issued", issued, issued + timedelta(days=30),
                           issued + timedelta(days=3) if redeemed[n] else None))
        self.next_grant_id += len(granted)
        return Chunk(customers, orders, items, tags, grants)


def coupon_rows() -> list[dict]:
    return [{"id": n, "title": title, "discount_type": kind, "discount_value": value, "valid_days": 30,
             "one_per_customer": True, "active": True, "issued_count": 0, "created_at": START, "updated_at": START}
            for n, (title, kind, value) in enumerate(COUPONS, start=1)]


# -- PostgreSQL -------------------------------------------------------------------------------

BULK_TABLES = ("orders", "order_items", "customer_tags", "coupon_grants")


async def _drop_secondary(connection, table: str) -> list[str]:
    """Drop `table`'s foreign keys, unique constraints and plain indexes (not the primary key);
    returns the statements that put them back."""
    restore = []
    for row in await connection.fetch(
        "SELECT conname, contype, pg_get_constraintdef(oid) AS def FROM pg_constraint "
        "WHERE conrelid = $1::regclass AND contype IN ('f', 'u') ORDER BY contype DESC", table):
        await connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{row["conname"]}"')
        restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{row["conname"]}" {row["def"]}')
    for row in await connection.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = $1 AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)", table):
        await connection.execute(f'DROP INDEX "{row["indexname"]}"')
        restore.insert(0, row["indexdef"])  # indexes first, then the constraints
    return restore


async def fill_postgres(dsn: str, customers: int, seed: int) -> dict:
    import asyncpg

    generator = ShopGenerator(customers, seed)
    connection = await asyncpg.connect(dsn)
    counts = {"customers": 0, "orders": 0, "order_items": 0, "customer_tags": 0, "coupon_grants": 0}
    try:
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for coupon in coupon_rows():
            await connection.execute(
                "INSERT INTO coupons (id, title, discount_type, discount_value, valid_days, one_per_customer, active, "
                "issued_count, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                *coupon.values())
        restore = []
        for table in BULK_TABLES:
            restore += await _drop_secondary(connection, table)
        started = time.perf_counter()
        for chunk in generator.chunks():
            async with connection.transaction():
                await connection.copy_records_to_table("customers", records=chunk.customers, columns=CUSTOMER_COLUMNS)
                await connection.copy_records_to_table("orders", records=chunk.orders, columns=ORDER_COLUMNS)
                await connection.copy_records_to_table("order_items", records=chunk.items, columns=ITEM_COLUMNS)
                await connection.copy_records_to_table("customer_tags", records=chunk.tags, columns=TAG_COLUMNS)
                await connection.copy_records_to_table("coupon_grants", records=chunk.grants, columns=GRANT_COLUMNS)
            for name, rows in (("customers", chunk.customers), ("orders", chunk.orders), ("order_items", chunk.items),
                               ("customer_tags", chunk.tags), ("coupon_grants", chunk.grants)):
                counts[name] += len(rows)
            _progress(counts, customers, started)
        print(flush=True)
        print("rebuilding indexes and constraints…", flush=True)
        rebuild_started = time.perf_counter()
        for statement in restore:
            await connection.execute(statement)
        counts["index_rebuild_s"] = round(time.perf_counter() - rebuild_started, 1)
        for table, column in (("customers", "id"), ("orders", "id"), ("order_items", "id"), ("coupon_grants", "id"),
                              ("coupons", "id")):
            await connection.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                                     f"(SELECT coalesce(max({column}), 1) FROM {table}))")
        await connection.execute(f"UPDATE coupons SET issued_count = (SELECT count(*) FROM coupon_grants g WHERE g.coupon_id = coupons.id)")
    finally:
        await connection.close()
    return counts


def _progress(counts: dict, total: int, started: float) -> None:
    done = counts["customers"]
    elapsed = time.perf_counter() - started
    rate = counts["orders"] / elapsed if elapsed else 0
    eta = elapsed * (total - done) / done if done else 0
    print(f"\r{done:>10,}/{total:,} customers  {counts['orders']:>12,} orders  {counts['order_items']:>12,} lines"
          f"  {rate:>9,.0f} orders/s  ETA {eta:5.0f} s", end="", flush=True)


# -- SQLite -----------------------------------------------------------------------------------


def fill_sqlite(url: str, customers: int, seed: int) -> dict:
    import sqlalchemy as sa

    from kizuna.storage.models import Coupon, CouponGrant, Customer, CustomerTag, Order, OrderItem

    engine = sa.create_engine(url.replace("+aiosqlite", ""))
    generator = ShopGenerator(customers, seed)
    counts = {"customers": 0, "orders": 0, "order_items": 0, "customer_tags": 0, "coupon_grants": 0}
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(sa.insert(Coupon.__table__), coupon_rows())
    for chunk in generator.chunks():
        with engine.begin() as connection:
            for table, columns, rows, name in ((Customer.__table__, CUSTOMER_COLUMNS, chunk.customers, "customers"),
                                               (Order.__table__, ORDER_COLUMNS, chunk.orders, "orders"),
                                               (OrderItem.__table__, ITEM_COLUMNS, chunk.items, "order_items"),
                                               (CustomerTag.__table__, TAG_COLUMNS, chunk.tags, "customer_tags"),
                                               (CouponGrant.__table__, GRANT_COLUMNS, chunk.grants, "coupon_grants")):
                if rows:
                    connection.execute(sa.insert(table), [dict(zip(columns, row)) for row in rows])
                counts[name] += len(rows)
        _progress(counts, customers, started)
    print(flush=True)
    engine.dispose()
    return counts


# -- both -------------------------------------------------------------------------------------


def _events_sql(dialect: str) -> str:
    """The follow (and, for who blocked, unfollow) webhook events of every LINE customer, as LINE
    sent them (the analytics page counts friends added and blocked from these), set-based."""
    if dialect == "postgresql":
        millis = "(extract(epoch FROM {at}) * 1000)::bigint"
        payload = "'{{}}'::jsonb"
    else:
        millis = "CAST((julianday({at}) - 2440587.5) * 86400000 AS INTEGER)"
        payload = "'{{}}'"
    columns = "webhook_event_id, event_type, source_key, line_user_id, event_timestamp, is_redelivery, payload, status, attempts, received_at"
    select = ("SELECT '{kind}-' || id, '{kind}', line_user_id, line_user_id, " + millis + ", false, " + payload
              + ", 'done', 1, {at} FROM customers WHERE line_user_id IS NOT NULL AND {at} IS NOT NULL")
    return (f"INSERT INTO inbound_events ({columns}) " + select.format(kind="follow", at="followed_at")
            + " UNION ALL " + select.format(kind="unfollow", at="unfollowed_at"))


async def fill_events(url: str) -> int:
    import sqlalchemy as sa

    from kizuna.storage.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return (await connection.execute(sa.text(_events_sql(engine.dialect.name)))).rowcount
    finally:
        await engine.dispose()


async def backfill_metrics(url: str) -> float:
    """`customer_metrics.refresh_all` (the project's own backfill) then ANALYZE; seconds of the refresh."""
    import sqlalchemy as sa

    from kizuna.storage import customer_metrics
    from kizuna.storage.db import create_engine, session_factory, transaction

    engine = create_engine(url)
    try:
        started = time.perf_counter()
        async with transaction(session_factory(engine)) as session:
            await customer_metrics.refresh_all(session, now=NOW)
        elapsed = time.perf_counter() - started
        async with engine.connect() as connection:
            if url.startswith("postgresql"):
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(sa.text("VACUUM ANALYZE"))
            else:
                await connection.execute(sa.text("ANALYZE"))
                await connection.commit()
        return elapsed
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--database", default="kizuna_scale", help="PostgreSQL database to (re)create")
    parser.add_argument("--sqlite", help="write a SQLite file here instead of PostgreSQL")
    parser.add_argument("--events-only", action="store_true", help="only add the follow/unfollow events to a data set made before")
    args = parser.parse_args()
    if args.events_only:
        url = f"sqlite+aiosqlite:///{args.sqlite}" if args.sqlite else f"postgresql+asyncpg://postgres@127.0.0.1:5432/{args.database}"
        print(f"{asyncio.run(fill_events(url)):,} follow/unfollow events")
        return 0

    from kizuna.storage.migrate import upgrade

    if args.sqlite:
        Path(args.sqlite).unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{args.sqlite}"
    else:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{args.database}"
        from bench._common import PG_ADMIN_DSN, _pg

        _pg(PG_ADMIN_DSN, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        _pg(PG_ADMIN_DSN, f'CREATE DATABASE "{args.database}"')
    started = time.perf_counter()
    upgrade(url)
    if args.sqlite:
        counts = fill_sqlite(url, args.customers, args.seed)
    else:
        counts = asyncio.run(fill_postgres(url.replace("+asyncpg", ""), args.customers, args.seed))
    events = asyncio.run(fill_events(url))
    load_s = time.perf_counter() - started
    counts["inbound_events"] = events
    print(f"loaded in {load_s:.0f} s: {counts}", flush=True)
    print("customer_metrics.refresh_all (backfill)…", flush=True)
    refresh_s = asyncio.run(backfill_metrics(url))
    print(f"backfill refresh_all: {refresh_s:.1f} s; total {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
