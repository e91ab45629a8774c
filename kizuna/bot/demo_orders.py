"""`kizuna demo-orders FILE.csv`: a demo cosmetics shop's order history to import, as its EC site
and POS would export it (Shift_JIS, the documented orders header, one row per order line), so a
newcomer can try `kizuna import orders`, the analytics page, the segments and the churn model
without data of their own.

Dates are relative to today, so the recency-based presets always have members. Shaped like a
real shop: most customers buy once, a few buy often; some repeat customers stop buying (the
churn model's 離脱予備軍); ヘアケア and スキンケア sell best; 3 % of orders cancelled, 1 % returned.
Deterministic for a seed.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from kizuna.storage.imports import ORDERS_HEADER

TOKYO = ZoneInfo("Asia/Tokyo")
HISTORY_DAYS = 730


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price: int
    weight: int  # how often it is bought, relative


PRODUCTS = (
    Product("HC-001", "アミノ酸シャンプー 300ml", "ヘアケア", 2640, 30),
    Product("HC-002", "リペアトリートメント 250g", "ヘアケア", 2860, 22),
    Product("HC-003", "ヘアオイル 80ml", "ヘアケア", 3300, 12),
    Product("SK-001", "保湿化粧水 150ml", "スキンケア", 3520, 28),
    Product("SK-002", "美容液 30ml", "スキンケア", 6600, 14),
    Product("SK-003", "クレンジングジェル 200g", "スキンケア", 2420, 18),
    Product("SK-004", "UVミルク SPF50+", "スキンケア", 2970, 10),
    Product("MK-001", "リキッドファンデーション", "メイク", 4180, 8),
    Product("MK-002", "リップティント", "メイク", 1980, 9),
    Product("BD-001", "ボディソープ 詰め替え", "ボディケア", 1320, 16),
    Product("BD-002", "ハンドクリーム 50g", "ボディケア", 1100, 12),
    Product("GF-001", "ギフトセット（桜）", "ギフト", 5500, 4),
)
STORES = ("渋谷店", "梅田店", "福岡天神店")


def _orders_per_customer(rng: random.Random) -> int:
    """Most buy once; a long tail buys often (a geometric number, capped)."""
    count = 1
    while rng.random() < 0.55 and count < 30:
        count += 1
    return count


def _order_times(rng: random.Random, count: int, now: datetime) -> list[datetime]:
    first = now - timedelta(days=rng.uniform(1, HISTORY_DAYS))
    mean_gap = rng.uniform(20, 75)
    stops_early = count > 2 and rng.random() < 0.35  # a repeat customer who drifts away
    times = [first]
    for _ in range(count - 1):
        gap = rng.expovariate(1 / mean_gap) + 3
        following = times[-1] + timedelta(days=gap)
        if following >= now - timedelta(hours=1):
            break
        times.append(following)
    if stops_early:
        times = [moment for moment in times if moment < now - timedelta(days=rng.uniform(120, 300))] or times[:1]
    # opening hours, Tokyo time
    return [moment.astimezone(TOKYO).replace(hour=rng.randint(9, 21), minute=rng.randint(0, 59), second=0, microsecond=0)
            for moment in times]


def rows(customers: int, *, seed: int = 1, now: datetime | None = None):
    """The CSV rows (dicts by the orders header), one per order line."""
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc)
    weights = [product.weight for product in PRODUCTS]
    order_number = 0
    for number in range(1, customers + 1):
        references = {"external_customer_id": f"C{number:06d}", "email": f"demo.customer{number}@example.com",
                      "phone": f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}" if rng.random() < 0.4 else ""}
        favourite = rng.choices(PRODUCTS, weights)[0]
        for moment in _order_times(rng, _orders_per_customer(rng), now):
            order_number += 1
            lines = {favourite.sku: favourite} if rng.random() < 0.6 else {}
            for product in rng.choices(PRODUCTS, weights, k=rng.randint(1, 2)):
                lines.setdefault(product.sku, product)
            quantities = {sku: 1 if rng.random() < 0.85 else 2 for sku in lines}
            store = rng.random() < 0.3
            status = rng.choices(("completed", "cancelled", "returned"), (96, 3, 1))[0]
            order = {
                "external_id": f"{'POS' if store else 'EC'}-{order_number:07d}", "ordered_at": moment.isoformat(),
                "total": str(sum(product.price * quantities[sku] for sku, product in lines.items())),
                "channel": "store" if store else "ec", "store": rng.choice(STORES) if store else "", "status": status,
                "line_user_id": "", **references,
            }
            for sku, product in lines.items():
                yield {**order, "sku": sku, "name": product.name, "category": product.category,
                       "quantity": str(quantities[sku]), "unit_price": str(product.price)}


def write(path: Path, customers: int, *, seed: int = 1, now: datetime | None = None) -> tuple[int, int]:
    """Write the file in Shift_JIS (CP932, CRLF) as POS and EC exports are; (orders, lines) written."""
    orders, lines = set(), 0
    with path.open("w", encoding="cp932", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=ORDERS_HEADER, lineterminator="\r\n")
        writer.writeheader()
        for row in rows(customers, seed=seed, now=now):
            writer.writerow(row)
            orders.add(row["external_id"])
            lines += 1
    return len(orders), lines
