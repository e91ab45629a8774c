"""Segment figures at scale (issue 14, "Figures"): each preset and the Done-when rule
「ヘアケアを90日以内に購入・R≥4・会員」, previewed as the console and the API do it
(`campaigns.segments.preview`: the count and a sample of 10 members with their metrics), against
the query a developer would write without the kept per-customer aggregates: the raw orders (and
order lines) joined to the customers, aggregated per customer — timed for its count alone, which
favours it (the preview also fetches and loads its sample). Also the analytics page's queries
(campaigns/analytics.py) and the console's segment list with 20 saved segments.

Per rule: median of 5 warm runs (after one discarded run) of each, their ratio, whether the
counts are equal (the bench fails if not), and on PostgreSQL whether EXPLAIN (FORMAT JSON) of the
compiled rule has a SubPlan node (the bench fails if so).

Run on a data set made by bench/shop_data.py (its `NOW` is the moment segments are evaluated at):

    .venv/bin/python bench/segments_scale.py                                  # PostgreSQL kizuna_scale
    .venv/bin/python bench/segments_scale.py --sqlite /tmp/kizuna_scale.db
    .venv/bin/python bench/segments_scale.py --append docs/benchmarks.md      # append the table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import describe_machine, machine_info, wait_for_quiet  # noqa: E402
from bench.shop_data import NOW  # noqa: E402
from kizuna.campaigns import analytics, segments  # noqa: E402
from kizuna.storage.db import create_engine, session_factory  # noqa: E402
from kizuna.storage.types import UTCDateTime  # noqa: E402

RUNS = 5
DAY = timedelta(days=1)
DONE_WHEN = {"all": [{"field": "purchased_category", "op": "eq", "value": "ヘアケア", "within_days": 90},
                     {"field": "rfm_r", "op": "gte", "value": 4}, {"field": "registered", "op": "eq", "value": True}]}

# Hand-written: completed orders (with their lines where a rule is about what was bought) joined
# to the customers, grouped per customer; bounds computed in Python as a developer would. The
# default RFM bands (storage/customer_metrics.py): R ≥ 4 is at most 60 days, F ≥ 4 five orders,
# M ≥ 4 ¥50,000.
_PER_CUSTOMER = ("SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id AND o.status = 'completed' "
                 "WHERE c.merged_into_id IS NULL GROUP BY c.id ")
HAND_WRITTEN = {
    "loyal": (_PER_CUSTOMER + "HAVING max(o.ordered_at) > :r4 AND count(*) >= 5 AND sum(o.total) >= 50000",
              {"r4": NOW - 61 * DAY}),
    "dormant": (_PER_CUSTOMER + "HAVING max(o.ordered_at) <= :d181", {"d181": NOW - 181 * DAY}),
    "churn_risk": (_PER_CUSTOMER + "HAVING count(*) >= 2 AND max(o.ordered_at) <= :d61 AND max(o.ordered_at) > :d181",
                   {"d61": NOW - 61 * DAY, "d181": NOW - 181 * DAY}),
    "new": (_PER_CUSTOMER + "HAVING count(*) = 1 AND max(o.ordered_at) > :d31", {"d31": NOW - 31 * DAY}),
    "f2_candidates": (_PER_CUSTOMER + "HAVING count(*) = 1 AND max(o.ordered_at) > :d91", {"d91": NOW - 91 * DAY}),
    "done_when": ("SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id AND o.status = 'completed' "
                  "JOIN order_items i ON i.order_id = o.id WHERE c.merged_into_id IS NULL AND c.registered "
                  "GROUP BY c.id HAVING max(o.ordered_at) > :r4 "
                  "AND sum(CASE WHEN i.category = :category AND o.ordered_at >= :since THEN 1 ELSE 0 END) > 0",
                  {"r4": NOW - 61 * DAY, "since": NOW - 90 * DAY, "category": "ヘアケア"}),
}


def _birthday_month(dialect: str) -> tuple[str, dict]:
    # Not about orders: the hand-written query is the compiled one's twin (no kept aggregate helps).
    month = "extract(month FROM c.birthday)" if dialect == "postgresql" else "CAST(strftime('%m', c.birthday) AS INTEGER)"
    return f"SELECT c.id FROM customers c WHERE c.merged_into_id IS NULL AND {month} = :month", {"month": 12}


def _hand_written(key: str, dialect: str) -> sa.TextClause | None:
    sql, params = _birthday_month(dialect) if key == "birthday_month" else HAND_WRITTEN.get(key, (None, None))
    if sql is None:
        return None
    text = sa.text(f"SELECT count(*) FROM ({sql}) AS hand_written")
    return text.bindparams(*(sa.bindparam(name, value, type_=UTCDateTime) if hasattr(value, "tzinfo")
                             else sa.bindparam(name, value) for name, value in params.items()))


async def _median(work, runs: int = RUNS) -> tuple[float, object]:
    # The machine is shared: start when other jobs leave the CPUs mostly idle (waits at most 10 s).
    await asyncio.to_thread(wait_for_quiet, 0.6, 10.0, 0.5)
    result = await work()  # warm: caches, plans
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _sub_plans(plan: dict) -> list[str]:
    found = [plan.get("Subplan Name", "SubPlan")] if plan.get("Parent Relationship") == "SubPlan" else []
    for child in plan.get("Plans", []):
        found += _sub_plans(child)
    return found


async def _explain(session, rule) -> tuple[list[str], str]:
    statement = await segments.audience(session, rule, now=NOW)
    compiled = statement.compile(dialect=session.bind.dialect, compile_kwargs={"render_postcompile": True})
    connection = await session.connection()
    values = tuple(compiled.params[name] for name in compiled.positiontup)
    raw = (await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) SELECT count(*) FROM ({compiled.string}) AS a",
                                            values)).scalar_one()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return _sub_plans(plan), json.dumps(plan)


async def bench_rules(sessions, dialect: str, rules: list[tuple[str, str, dict]]) -> list[dict]:
    rows = []
    for key, name, rule in rules:
        async def preview():
            async with sessions() as session:
                return await segments.preview(session, rule, now=NOW)

        async def count_only():
            async with sessions() as session:
                ids = (await segments.audience(session, rule, now=NOW)).subquery()
                return (await session.execute(sa.select(sa.func.count()).select_from(ids))).scalar_one()

        preview_s, result = await _median(preview)
        count_s, _ = await _median(count_only)
        row = {"key": key, "name": name, "count": result.count, "preview_ms": preview_s * 1000, "count_ms": count_s * 1000}
        hand = _hand_written(key, dialect)
        if hand is not None:
            async def hand_written():
                async with sessions() as session:
                    return (await session.execute(hand)).scalar_one()

            hand_s, hand_count = await _median(hand_written)
            row.update(hand_ms=hand_s * 1000, hand_count=hand_count, ratio=preview_s / hand_s)
        if dialect == "postgresql":
            async with sessions() as session:
                row["sub_plans"], _plan = await _explain(session, rule)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    hand = f"{row['hand_ms']:9.0f} {row['ratio']:6.2f}" if "hand_ms" in row else f"{'—':>9} {'—':>6}"
    equal = ("yes" if row["hand_count"] == row["count"] else f"NO ({row['hand_count']:,})") if "hand_count" in row else "—"
    plans = ("none" if not row["sub_plans"] else ",".join(row["sub_plans"])) if "sub_plans" in row else "n/a"
    return (f"| {row['name']:<28} | {row['count']:>9,} | {row['preview_ms']:8.0f} | {row['count_ms']:8.0f} | "
            f"{hand.split()[0]:>9} | {hand.split()[1]:>6} | {equal:<5} | {plans} |")


HEADER = ("| rule | matches | preview ms | count ms | hand-written ms | ratio | same count | SubPlan |\n"
          "|---|---:|---:|---:|---:|---:|---|---|")


async def bench_analytics(sessions) -> list[tuple[str, float]]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Tokyo")
    work = {
        "friends_per_day (90 days)": lambda s: analytics.friends_per_day(s, now=NOW, days=90, zone=zone),
        "registrations_per_day (90 days)": lambda s: analytics.registrations_per_day(s, now=NOW, days=90, zone=zone),
        "rfm_grid": lambda s: analytics.rfm_grid(s, now=NOW),
        "sales_by_decile": lambda s: analytics.sales_by_decile(s),
        "f2_by_first_month (12 months)": lambda s: analytics.f2_by_first_month(s, now=NOW, months=12, zone=zone),
        "repeat_rate_by_month (12 months)": lambda s: analytics.repeat_rate_by_month(s, now=NOW, months=12, zone=zone),
    }
    out = []
    for label, query in work.items():
        async def run(query=query):
            async with sessions() as session:
                return await query(session)

        seconds, _ = await _median(run, runs=3)
        out.append((label, seconds * 1000))
        print(f"| {label:<34} | {seconds * 1000:8.0f} |", flush=True)
    return out


async def bench_segment_list(sessions, count: int = 20) -> float:
    """The console's segment list: `count` saved segments (the presets and variations of them,
    as marketers save them), each counted as the page does."""
    from kizuna.console.views import segments as segment_views
    from kizuna.storage.models import Segment

    base = [preset.rule for preset in segments.presets(NOW)] + [DONE_WHEN]
    saved = []
    async with sessions() as session, session.begin():
        await session.execute(sa.delete(Segment).where(Segment.name.like("bench %")))
        for n in range(count):
            rule = base[n % len(base)]
            if n >= len(base):  # a marketer's variation: the same audience narrowed to members
                rule = {"all": [rule, {"field": "registered", "op": "eq", "value": n % 2 == 0}]}
            segment = Segment(name=f"bench {n}", rule=rule, created_at=NOW, updated_at=NOW)
            session.add(segment)
            saved.append(segment)

    async def page_counts():
        async with sessions() as session:
            return await segment_views.list_counts(session, saved, NOW)

    seconds, _ = await _median(page_counts, runs=3)
    async with sessions() as session, session.begin():
        await session.execute(sa.delete(Segment).where(Segment.name.like("bench %")))
    return seconds * 1000


async def main_async(url: str, append: Path | None, label: str, only: str | None = None) -> int:
    engine = create_engine(url)
    sessions = session_factory(engine)
    dialect = engine.dialect.name
    try:
        async with sessions() as session:
            customers = (await session.execute(sa.text("SELECT count(*) FROM customers"))).scalar_one()
            orders = (await session.execute(sa.text("SELECT count(*) FROM orders"))).scalar_one()
            lines = (await session.execute(sa.text("SELECT count(*) FROM order_items"))).scalar_one()
            version = (await session.execute(sa.text("SELECT version()" if dialect == "postgresql" else "SELECT 'SQLite ' || sqlite_version()"))).scalar_one()
        machine = describe_machine(machine_info())
        print(f"{label}: {customers:,} customers, {orders:,} orders, {lines:,} order lines; {version.split(' on ')[0]}")
        print(machine)
        print(HEADER)
        rules = [(p.key, p.name, p.rule) for p in segments.presets(NOW)] + [("done_when", "ヘアケア90日・R≥4・会員", DONE_WHEN)]
        rows = await bench_rules(sessions, dialect, [rule for rule in rules if only in (None, rule[0])])
        if only is not None:
            return 0
        print("\n| analytics query | ms |\n|---|---:|")
        analytics_rows = await bench_analytics(sessions)
        list_ms = await bench_segment_list(sessions)
        print(f"\nsegment list, 20 saved segments counted: {list_ms:.0f} ms")
    finally:
        await engine.dispose()
    failures = [row["name"] for row in rows if "hand_count" in row and row["hand_count"] != row["count"]]
    sub_plans = [row["name"] for row in rows if row.get("sub_plans")]
    if append is not None:
        with append.open("a") as out:
            out.write(f"\n### {label}: {customers:,} customers, {orders:,} orders ({lines:,} lines)\n\n")
            out.write(f"{machine}; {version.split(' on ')[0]}\n\n{HEADER}\n")
            out.write("\n".join(_line(row) for row in rows) + "\n\n| analytics query | ms |\n|---|---:|\n")
            out.write("\n".join(f"| {label_} | {ms:.0f} |" for label_, ms in analytics_rows) + "\n\n")
            out.write(f"Segment list page, 20 saved segments counted: {list_ms:.0f} ms.\n")
    if failures:
        print(f"FAIL: counts differ from the hand-written query: {failures}", file=sys.stderr)
    if sub_plans:
        print(f"FAIL: SubPlan in the plan of {sub_plans}", file=sys.stderr)
    return 1 if failures or sub_plans else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="kizuna_scale")
    parser.add_argument("--sqlite", help="a SQLite file made by bench/shop_data.py --sqlite")
    parser.add_argument("--append", type=Path, help="append the figures to this Markdown file")
    parser.add_argument("--only", help="only this rule (a preset key, or done_when); no analytics, no list")
    args = parser.parse_args()
    if args.sqlite:
        url, label = f"sqlite+aiosqlite:///{args.sqlite}", "SQLite"
    else:
        url, label = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{args.database}", "PostgreSQL"
    return asyncio.run(main_async(url, args.append, label, args.only))


if __name__ == "__main__":
    sys.exit(main())
