"""Chaos benchmark (issue 12): the long variant of tests/bot/test_chaos.py.

Runs each fault scenario of tests/chaos.py - Redis restarted, Redis flushed, PostgreSQL
restarted with `-m immediate`, workers and serve killed - with a larger load, beside a
run without a fault ("none", the baseline), all in this one run and on the same machine,
and prints per scenario: messages, answers refused (non-200) and redelivered, how long
a message waited from its acknowledgement until its answer reached LINE (p50/p99/max),
the time from the end of the fault until every message was answered (it includes the
rest of the load), events taken over by another worker (fenced), and whether anything
was lost or doubled (the run stops with the logs if so).

    .venv/bin/python bench/chaos.py                          # 40 customers x 25 messages, 1 a second each
    .venv/bin/python bench/chaos.py --customers 100 --messages 30 --scenario redis-restart

Needs PostgreSQL at 127.0.0.1:5432 (a fresh database per scenario is created and dropped),
redis-server, initdb and pg_ctl (PostgreSQL clusters of its own). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common as common  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from kizuna.emulator import Emulator  # noqa: E402
from kizuna.storage.migrate import upgrade  # noqa: E402
from tests.chaos import SCENARIOS, run_scenario  # noqa: E402
from tests.conftest import ACCESS_TOKEN, CHANNEL_SECRET  # noqa: E402


def one(scenario: str, args) -> dict:
    # A database of its own on the machine's server ("postgres-restart" makes a cluster instead).
    with common.fresh_postgres_database("kizuna_chaos") as name:
        database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        upgrade(database_url)
        return asyncio.run(_run(scenario, None if scenario == "postgres-restart" else database_url, args))


async def _run(scenario: str, database_url: str | None, args) -> dict:
    emulator = Emulator(channel_secret=CHANNEL_SECRET, access_token=ACCESS_TOKEN)
    server = TestServer(emulator.create_app(), host="127.0.0.1")
    await server.start_server()
    emulator.base_url = str(server.make_url("")).rstrip("/")
    logs_dir = Path(tempfile.mkdtemp(prefix=f"kizuna-chaos-{scenario}-"))
    try:
        result = await run_scenario(
            scenario, emulator, logs_dir, database_url=database_url, redis_prefix=f"kizuna-chaos-{uuid.uuid4().hex[:8]}",
            customers=args.customers, messages_each=args.messages, gap=args.gap, settle_timeout=args.settle_timeout,
        )
    finally:
        await server.close()
    outcome = result.outcome
    return {
        "scenario": scenario,
        "messages": outcome.stored,
        "answers": outcome.replies,
        "refused": sum(outcome.refused.values()),
        "settle_s": outcome.seconds_to_settle,
        "answer": outcome.answer_seconds,
        "fenced": result.logs.count("was taken over by another worker"),
        "still_running": result.still_running,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--messages", type=int, default=25, help="messages per customer")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between one customer's messages")
    parser.add_argument("--settle-timeout", type=float, default=120)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all, 'none' first")
    args = parser.parse_args()
    scenarios = args.scenario or list(SCENARIOS)
    print(common.describe_machine(common.machine_info()))
    print(f"load: {args.customers} customers x {args.messages} messages, one every {args.gap} s per customer; "
          "serve + 2 workers, PostgreSQL + Redis; the fault at a third of the load")
    rows = [one(scenario, args) for scenario in scenarios]
    print(f"\n{'scenario':<18}{'messages':>9}{'answers':>9}{'refused':>9}{'answer p50/p99/max (s)':>26}{'settled after':>15}{'fenced':>8}  lost/doubled")
    for row in rows:
        p50, p99, worst = row["answer"]
        print(f"{row['scenario']:<18}{row['messages']:>9}{row['answers']:>9}{row['refused']:>9}{p50:>12.2f} /{p99:>5.1f} /{worst:>5.1f}"
              f"{row['settle_s']:>13.1f} s{row['fenced']:>8}  0/0{'' if row['still_running'] else '  (a process died!)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
